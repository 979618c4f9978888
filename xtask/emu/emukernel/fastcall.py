"""Kernel calls without a fault and a translation flush per call.

How speakeasy 1.5.11 reaches an API hook. The loader points every import address table slot of the
image at an address of its own in a reserved range (`EMU_RESERVED`, 0xfeedf000, 4 pages: the return
address of a run, then the imports at 4-byte steps, the routines resolved at run time
(MmGetSystemRoutineAddress) and the callbacks it hands out, e.g. KMDF's function table, at 1-byte
steps). The range is left unmapped, so the driver's `call [__imp_X]` takes an invalid-fetch fault.
The fault handler maps the range, runs the routine's handler (`handle_import_func`: the API hooks,
hence `Machine._dispatch`, the arguments, the API log) and returns by writing the return address to
the program counter; it also switches on a hook on *every* instruction so that the next one unmaps
the range again. Writing the program counter from a hook makes unicorn 1.x leave its execution loop
and flush its whole translation cache, so after every kernel call all driver code is translated
again; with the map, unmap and per-instruction hook, about 1 ms per kernel call.

`FastCalls` maps the range once, fills it with `ret` instructions and puts one code hook on it,
bounded to it (unicorn calls it only for instructions inside the range). When the driver's call
arrives at an address of the range, the hook makes exactly the decisions speakeasy's fault handler
makes, in its order (SEH return, API callback return, end of the run, import of the current module,
routine resolved at run time, callback, SEH dispatch, invalid fetch), through speakeasy's own
`handle_import_func`: every API hook, `Machine._dispatch` and the models run as before, with the
same arguments, return values and API log. Only the return itself differs: when the handler returns
to the caller normally (`do_call_return` to the return address on the stack), the hook sets the
return value and lets the `ret` at that address pop and jump, the same state without a write of the
program counter. A return anywhere else (a model's trampoline, a new run) is still written, as
before. Nothing else changes: a call or jump to an unmapped address outside the range (a wild
pointer, freed pool) still takes speakeasy's fault path and ends the run with the same error.
"""

import ctypes
import logging
import traceback
from types import MethodType

import speakeasy.windows.common as _w
import speakeasy.winenv.arch as _arch
import unicorn.x86_const as _x
from speakeasy.common import HOOK_CODE
from speakeasy.windows.winemu import ddk
from unicorn.unicorn import UcError, _uc

RET = 0xC3
_RIP, _RSP, _RAX = _x.UC_X86_REG_RIP, _x.UC_X86_REG_RSP, _x.UC_X86_REG_RAX
_MASK = 0xFFFFFFFFFFFFFFFF
_ARG_REGISTERS = (_x.UC_X86_REG_RCX, _x.UC_X86_REG_RDX, _x.UC_X86_REG_R8, _x.UC_X86_REG_R9)

# What this module relies on, checked when it is attached: a speakeasy that moves them must fail
# loudly here, not change what a run means.
_EMU_ATTRIBUTES = ('return_hook', 'exit_hook', 'curr_mod', 'callbacks', 'dyn_imps', 'emu_hooks_set',
                   'handle_import_func', 'do_call_return', 'on_run_complete', 'on_emu_complete',
                   'get_error_info', 'emu_eng', '_set_emu_hooks', '_unset_emu_hooks',
                   'dispatch_handlers', 'dispatch_seh', 'continue_seh', 'run_complete',
                   'emu_complete', 'get_ret_address', 'get_module_from_addr', 'log_exception',
                   'add_api_hook', 'get_api_hooks', 'api', 'normalize_import_miss', 'hammer',
                   'profiler', 'logger', 'max_api_count', 'get_current_run', 'get_func_argv',
                   'get_address_map', '_dynamic_code_cb', 'get_mem_maps')


class FastCalls:
    """Routes every fetch inside speakeasy's reserved range to its handler from one code hook."""

    def __init__(self, emu, module):
        missing = [a for a in _EMU_ATTRIBUTES if not hasattr(emu, a)]
        if missing:
            raise RuntimeError('emukernel.fastcall: this speakeasy lacks %s; the fast dispatch is '
                               'written against speakeasy-emulator 1.5.11' % ', '.join(missing))
        if emu.get_arch() != _arch.ARCH_AMD64:
            raise RuntimeError('emukernel.fastcall: x64 images only (a `ret` is an x64 return)')
        self.emu = emu
        self.begin = _w.EMU_RESERVED
        self.end = _w.EMU_RESERVED_END
        self.calls = 0            # kernel calls dispatched
        self._thunk = None        # the reserved address being handled
        self._returned = False    # its handler returned to the caller through the thunk's `ret`
        self._real_return = emu.do_call_return
        self._handlers = {}       # (module, routine) -> speakeasy's handler lookup, which is static
        self._hooks = {}          # (module, routine) -> its API hooks, until one is added
        add_api_hook = emu.add_api_hook

        def add_api_hook_and_forget(*args, **kwargs):
            self._hooks.clear()
            return add_api_hook(*args, **kwargs)

        emu.add_api_hook = add_api_hook_and_forget
        self.image_begin, self.image_end = _image_range(emu, module)
        # speakeasy starts with the range "unmapped" (emu_hooks_set) and toggles it around each
        # call; map it once, and make its toggles no-ops on this instance.
        emu.emu_eng.mem_map(self.begin, self.end - self.begin)
        emu.emu_eng.mem_write(self.begin, bytes([RET]) * (self.end - self.begin))
        emu.emu_hooks_set = False
        emu._set_emu_hooks = _nothing
        emu._unset_emu_hooks = _nothing
        emu.do_call_return = self._do_call_return
        # speakeasy's get_ret_address (the pointer at the stack pointer) without its generic register
        # and memory reads: the lock-order and IRQL models ask it on every acquisition.
        emu.get_ret_address = self._ret_address
        # Straight on unicorn (speakeasy's hook wrapper only adds checks this hook does not need).
        emu.emu_eng.hook_add(htype=HOOK_CODE, cb=self._fetch, begin=self.begin, end=self.end - 1)
        _fast_register_reads(emu.emu_eng)
        self._uch = emu.emu_eng.emu._uch
        self._uc_reg_read, self._uc_mem_read = _uc.uc_reg_read, _uc.uc_mem_read
        self._uc_reg_write = _uc.uc_reg_write
        self._value = ctypes.c_uint64(0)
        self._value_ref = ctypes.byref(self._value)
        self._bytes = ctypes.create_string_buffer(8)
        # One unicorn call for the registers a kernel call reads on entry (the stack pointer and
        # its register arguments) and on return (the stack and program pointers).
        self._entry = [_Registers(self._uch, (_RSP,) + _ARG_REGISTERS[:n]) for n in range(5)]
        self._exit = _Registers(self._uch, (_RSP, _RIP))

    def _fetch(self, uc, address, size, user_data):
        """The driver reached `address` in the reserved range: what speakeasy's invalid-fetch handler
        (`_hook_mem_unmapped`, `_handle_invalid_fetch`, then `_hook_code` at the next instruction)
        does for it, including how it ends the emulation when a handler raises (a model's
        KernelStop, a harness error)."""
        emu = self.emu
        try:
            return self._route(emu, address)
        except Exception as e:
            emu.log_exception('Invalid memory exception')
            emu.curr_run.error = emu.get_error_info(str(e), emu.get_pc(),
                                                    traceback=traceback.format_exc())
            emu.on_emu_complete()
            return False
        finally:
            self._thunk = None

    def _route(self, emu, address):
        self._returned = False
        if address == _w.SEH_RETURN_ADDR:
            emu.continue_seh()
            return self._after(address)
        if address == _w.API_CALLBACK_HANDLER_ADDR:
            run = emu.get_current_run()
            if run.api_callbacks:
                pc, _orig, args = run.api_callbacks.pop(0)
                emu.do_call_return(len(args), pc)
            return self._after(address)
        if address == emu.return_hook or address == emu.exit_hook:
            # The routine the harness (or speakeasy) started returned: the run is complete.
            emu.on_run_complete()
            return False
        if not emu.curr_mod:
            emu.curr_mod = emu.get_module_from_addr(emu.get_pc())
        target = None
        if emu.curr_mod:
            target = emu.curr_mod.import_table.get(address)
        if target is None:
            target = next(((mod, fn) for addr, mod, fn in emu.dyn_imps if addr == address), None)
        if target is None:
            target = next(((mod, fn) for addr, mod, fn in emu.callbacks if addr == address), None)
        if target is not None:
            self.calls += 1
            self._thunk = address
            self._import(emu, address, *target)
            return self._after(address)
        if emu.dispatch_handlers and emu.dispatch_seh(ddk.STATUS_ACCESS_VIOLATION, address):
            return self._after(address)
        emu.curr_run.error = emu.get_error_info('invalid_fetch', address)
        emu.on_run_complete()
        return False

    def _import(self, emu, address, dll, name):
        """speakeasy's `handle_import_func(dll, name)` (windows/winemu.py) for a routine with an API
        hook, which every routine the harness knows has: the same handler lookup, arguments, hook
        calls, API log and return, minus the work whose result nothing reads (the text of a debug
        log line that speakeasy's logger, set to CRITICAL, discards; a search of every memory map
        for the return address when it is inside the image, whose map is never VirtualAlloc'd
        code). A routine without a hook goes to speakeasy's own function."""
        key = (dll, name)
        handler = self._handlers.get(key)
        if handler is None:
            mod, func_attrs = emu.api.get_export_func_handler(dll, name)
            if not func_attrs:
                mod, func_attrs = emu.normalize_import_miss(dll, name)
            handler = self._handlers[key] = (mod, func_attrs)
        mod, func_attrs = handler
        hooks = self._hooks.get(key)
        if hooks is None:
            hooks = self._hooks[key] = emu.get_api_hooks(dll, name)
        if not hooks:
            return emu.handle_import_func(dll, name)
        if func_attrs:
            handler_name, func, argc, conv, _ordinal = func_attrs
            if name.startswith('ordinal_'):
                name = handler_name
            oret, argv = self._frame(emu, conv, argc)
            imp_api = '%s.%s' % (dll, name)
            default_ctx = {'func_name': imp_api}
            emu.hammer.handle_import_func(imp_api, conv, argc)
            hooked_func = MethodType(func, mod)

            def orig(args):
                return hooked_func(emu, args, default_ctx)

            for hook in hooks:
                rv = hook.cb(emu, imp_api, orig, argv)
            sp, pc = self._exit.read()
            ret = self._u64(sp)
            if not self.image_begin <= ret < self.image_end:
                mm = emu.get_address_map(ret)
                if mm and 'virtualalloc' in mm.get_tag().lower():
                    emu._dynamic_code_cb(emu, ret, 0, {})
            self._log_api(emu, oret, imp_api, rv, argv)
            if not emu.run_complete and ret == oret and pc == address and not self._returned:
                self._return(emu, rv, conv)
        else:
            hook = hooks[0]
            imp_api = '%s.%s' % (dll, name)
            if hook.call_conv is None:
                hook.call_conv = _arch.CALL_CONV_STDCALL
            _oret, argv = self._frame(emu, hook.call_conv, hook.argc)
            emu.hammer.handle_import_func(imp_api, hook.call_conv, hook.argc)
            rv = hook.cb(emu, imp_api, None, argv)
            sp, pc = self._exit.read()
            ret = self._u64(sp)
            self._log_api(emu, ret, imp_api, rv, argv)
            if pc == address and not self._returned:
                self._return(emu, rv, hook.call_conv)
            else:
                emu.do_call_return(hook.argc, ret, rv, conv=hook.call_conv)
            return
        run = emu.get_current_run()
        if run and run.get_api_count() > emu.max_api_count:
            emu.log_info("* Maximum number of API calls reached. Stopping current run.")
            run.error['type'] = 'max_api_count'
            run.error['count'] = emu.max_api_count
            run.error['pc'] = hex(emu.get_pc())
            run.error['last_api'] = imp_api
            emu.on_run_complete()

    # ---- the machine's state, read straight from unicorn (the values speakeasy's accessors return)

    def _reg(self, ureg):
        status = self._uc_reg_read(self._uch, ureg, self._value_ref)
        if status:
            raise UcError(status)
        return self._value.value

    def _u64(self, address):
        status = self._uc_mem_read(self._uch, address, self._bytes, 8)
        if status:
            raise UcError(status)
        return int.from_bytes(self._bytes.raw, 'little')

    def _ret_address(self):
        """speakeasy's `get_ret_address`: the pointer at the stack pointer."""
        return self._u64(self._reg(_RSP))

    def _frame(self, emu, conv, argc):
        """(the return address, the arguments): speakeasy's `get_ret_address()` and
        `get_func_argv(conv, argc)` on x64 (rcx, rdx, r8, r9, then the stack after the return address
        and the 0x20-byte home area; a variadic routine, argc < 0, gets the four registers, as
        speakeasy counts), the stack pointer and register arguments read in one call."""
        if conv == _arch.CALL_CONV_FLOAT:
            return self._ret_address(), emu.get_func_argv(conv, argc)
        registers = 4 if argc < 0 else min(argc, 4)
        values = self._entry[registers].read()
        sp = values[0]
        ret = self._u64(sp)
        argv = values[1:]
        if argc > registers:
            argv += [self._u64(sp + 0x28 + 8 * i) for i in range(argc - registers)]
        return ret, argv

    def _return(self, emu, rv, conv):
        """`do_call_return(argc, ret, rv, conv)` where `ret` is the return address on the stack and
        the program counter is still at the reserved address: on x64 that pops `ret`, jumps there
        and sets the return value; the `ret` instruction here does the first two."""
        self._returned = True
        if rv is not None:
            if conv == _arch.CALL_CONV_FLOAT:
                self._real_return(0, None, rv, conv)
            else:
                status = self._uc_reg_write(self._uch, _RAX, ctypes.byref(ctypes.c_uint64(rv & _MASK)))
                if status:
                    raise UcError(status)

    @staticmethod
    def _log_api(emu, pc, imp_api, rv, argv):
        """speakeasy's `log_api` without the debug text: the profiler's record of the call (the
        report's list of routines speakeasy handled, the API count its limit is checked against)."""
        if emu.logger and emu.logger.isEnabledFor(logging.INFO):
            emu.log_api(pc, imp_api, rv, argv)
        elif emu.profiler:
            emu.profiler.log_api(emu.curr_run, pc, imp_api, rv, argv)

    def _do_call_return(self, argc, ret_addr=None, ret_value=None, conv=None):
        """speakeasy's `do_call_return`, except for the normal return of the routine being handled:
        on x64 it pops the return address, jumps there and sets the return value; the `ret` at the
        reserved address does the pop and the jump, so only the value is set here."""
        emu = self.emu
        if self._thunk is not None and ret_addr and emu.get_pc() == self._thunk:
            if self._returned:
                raise RuntimeError('emukernel.fastcall: a second return from one kernel call '
                                   '(to 0x%x)' % ret_addr)
            if ret_addr == emu.get_ret_address():
                self._returned = True
                return self._real_return(argc, None, ret_value, conv)
        return self._real_return(argc, ret_addr, ret_value, conv)

    def _after(self, address):
        """What speakeasy's per-instruction hook does at the instruction after a handled fetch."""
        emu = self.emu
        if emu.run_complete:
            emu.on_run_complete()
            return False
        if not self._returned and not emu.emu_complete and emu.get_pc() == address:
            # The handler neither returned nor moved on: the `ret` here must not run.
            emu.curr_run.error = emu.get_error_info('invalid_fetch', address)
            emu.on_run_complete()
            return False
        return True


_reg_read_batch = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_int)(('uc_reg_read_batch', _uc))


class _Registers:
    """Some 64-bit registers read with one `uc_reg_read_batch` (unicorn reads them one by one, as
    separate `uc_reg_read` calls would): `read()` gives their values as a list, in order."""

    def __init__(self, uch, ids):
        n = len(ids)
        self._values = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(self._values)
        self._ids = (ctypes.c_int * n)(*ids)
        self._pointers = (ctypes.c_void_p * n)(*[base + 8 * i for i in range(n)])
        self._call = (uch, self._ids, self._pointers, n)

    def read(self):
        status = _reg_read_batch(*self._call)
        if status:
            raise UcError(status)
        return self._values[:]


def _image_range(emu, module):
    """The image's addresses, for which speakeasy's search of the memory maps always finds the
    image's own map (the first map holding them: maps are only ever appended after it), or an
    empty range if that is not so in this speakeasy."""
    begin, end = module.base, module.base + module.image_size
    for m in emu.get_mem_maps():
        if m.base <= begin <= m.base + m.size - 1:
            if m.base + m.size >= end and 'virtualalloc' not in (m.get_tag() or '').lower():
                return begin, end
            break
        if m.base < end and begin < m.base + m.size:
            break
    return 0, 0


def _nothing():
    return None


def _fast_register_reads(engine):
    """Reads of the 64-bit general-purpose registers (a dozen per kernel call) straight from
    unicorn's C API: the same value, without the Python binding's per-call checks for the register
    kinds that need a structure (descriptor tables, x87, SSE), which these are not."""
    x = _x
    plain = {x.UC_X86_REG_RIP, x.UC_X86_REG_RSP, x.UC_X86_REG_RBP, x.UC_X86_REG_RAX, x.UC_X86_REG_RBX,
             x.UC_X86_REG_RCX, x.UC_X86_REG_RDX, x.UC_X86_REG_RSI, x.UC_X86_REG_RDI, x.UC_X86_REG_R8,
             x.UC_X86_REG_R9, x.UC_X86_REG_R10, x.UC_X86_REG_R11, x.UC_X86_REG_R12, x.UC_X86_REG_R13,
             x.UC_X86_REG_R14, x.UC_X86_REG_R15}
    fast = {reg: ureg for reg, ureg in engine.regs.items() if ureg in plain}
    slow = engine.reg_read
    uch = engine.emu._uch
    value = ctypes.c_uint64(0)
    ref = ctypes.byref(value)
    read = _uc.uc_reg_read

    def reg_read(reg):
        ureg = fast.get(reg)
        if ureg is None:
            return slow(reg)
        status = read(uch, ureg, ref)
        if status:
            raise UcError(status)
        return value.value

    engine.reg_read = reg_read
