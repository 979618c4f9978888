"""IRQL of every call: the documented maximum IRQL of every routine the drivers import, and the
IRQL the kernel calls each family's callbacks at (Driver Verifier's IRQL checking).

`ROUTINES` has one row per routine: `'module.Name': (maximum IRQL, documentation)`. The maximum is
the IRQL column of the routine's reference page (learn.microsoft.com, Windows driver DDI reference,
`ddi/<header>/nf-<header>-<name>`), cited in the row; where the column says "see Remarks", the
Remarks' condition is a function of the arguments. Every row was re-checked against the pages'
`req.irql` and Remarks in the public source of that reference (MicrosoftDocs/windows-driver-docs-ddi,
`wdk-ddi-src/content/<header>/nf-<header>-<name>.md`); the WFP management routines without a DDI
page cite "WFP user mode management functions" (every Fwpm* routine but FwpmFreeMemory0 at
PASSIVE_LEVEL). Every call, whether speakeasy or a model
handles it, is checked against its row in `Machine._dispatch` (`check_call`); a row with a
condition (a paged allocation, a wait with a zero timeout) gives it as a function of the arguments.
A routine an image imports that has no row is itself an error (`IrqlChecks.audit`): the table must
stay complete. Run `cargo xtask build`, then the harness reports each missing import by name.

`CALLBACKS` gives the IRQL the harness calls each family's callbacks at: the highest the
documentation allows (Driver Verifier's stricter reading), so a callback that only works at a lower
IRQL fails here as it would on some Windows call.

DbgPrint/DbgPrintEx accept any IRQL <= DIRQL, but the Unicode conversions (%C %S %lc %ls %wc %ws
%wZ) "can only be used with IRQL = PASSIVE_LEVEL" (DbgPrintEx, Parameters: Format, and DbgPrint,
Remarks): `unicode_conversions()` finds them and the Debug model reports each use above
PASSIVE_LEVEL. Such a call does not stop the run (the conversion faults only when the pageable
Unicode tables it touches are paged out), but the audit check fails.
"""

from .errors import bugcheck
from .irql import APC_LEVEL, DISPATCH_LEVEL, IRQL_NOT_LESS_OR_EQUAL, PASSIVE_LEVEL, irql_name

IRQL_CHECK = 'IRQL of every call'
HIGH = 31        # "any IRQL"
DIRQL = 12       # DbgPrint's "IRQL <= DIRQL": above every IRQL the drivers run at

_DDI = 'https://learn.microsoft.com/windows-hardware/drivers/ddi/'


# "WFP user mode management functions": the kernel versions (fwpmk.h) of the management routines;
# "Callers of all of these functions except FwpmFreeMemory0 must be running at IRQL = PASSIVE_LEVEL".
_MGMT = ('https://learn.microsoft.com/windows-hardware/drivers/network/wfp-user-mode-management-functions: '
         'PASSIVE_LEVEL')


def _page(header, name):
    return '%s (%s.h): %s%s/nf-%s-%s' % (name, header, _DDI, header, header, name.lower())


def _paged_pool(argv):
    # POOL_TYPE: the low bit set is a paged pool (PagedPool = 1).
    return (APC_LEVEL, 'a paged pool type') if argv and argv[0] & 1 else (DISPATCH_LEVEL, 'nonpaged pool')


def _free_pool(machine, argv):
    # ExFreePoolWithTag, Remarks: at DISPATCH_LEVEL only for a block allocated from nonpaged pool.
    pool = getattr(machine, 'pool', None)
    block = pool.live.get(argv[0]) if pool is not None and argv else None
    if block is not None and block[2] & 1:
        return APC_LEVEL, 'a block from paged pool'
    return DISPATCH_LEVEL, 'a nonpaged block'


def _set_event(argv):
    # KeSetEvent, Remarks: Wait = FALSE at <= DISPATCH_LEVEL, otherwise <= APC_LEVEL.
    return (APC_LEVEL, 'Wait = TRUE') if len(argv) > 2 and argv[2] & 0xFF else (DISPATCH_LEVEL, 'Wait = FALSE')


def _wait_timeout(machine, argv):
    timeout = argv[4] if len(argv) > 4 else 0
    if timeout:
        try:
            if machine.read(timeout, 8) == b'\0' * 8:
                return DISPATCH_LEVEL, 'a zero timeout'
        except Exception:  # an unreadable timeout pointer is reported by the model itself
            pass
    return APC_LEVEL, 'a nonzero or no timeout'


# routine -> (maximum IRQL or a function (machine, argv) -> (IRQL, condition), documentation)
ROUTINES = {
    # ntoskrnl: pool
    'ntoskrnl.ExAllocatePoolWithTag': (lambda m, a: _paged_pool(a),
                                       _page('wdm', 'ExAllocatePoolWithTag')
                                       + ': <= DISPATCH_LEVEL; <= APC_LEVEL for paged pool'),
    'ntoskrnl.ExFreePoolWithTag': (_free_pool, _page('wdm', 'ExFreePoolWithTag')
                                   + ': <= DISPATCH_LEVEL; <= APC_LEVEL for a paged block (Remarks)'),
    # callback objects
    'ntoskrnl.ExCreateCallback': (APC_LEVEL, _page('wdm', 'ExCreateCallback')),
    'ntoskrnl.ExRegisterCallback': (APC_LEVEL, _page('wdm', 'ExRegisterCallback')),
    'ntoskrnl.ExNotifyCallback': (DISPATCH_LEVEL, _page('wdm', 'ExNotifyCallback')),
    'ntoskrnl.ExUnregisterCallback': (APC_LEVEL, _page('wdm', 'ExUnregisterCallback')),
    'ntoskrnl.ObfDereferenceObject': (DISPATCH_LEVEL, _page('wdm', 'ObDereferenceObject')
                                      + ' (ObfDereferenceObject is the export behind the macro)'),
    # registry filtering and the registry
    'ntoskrnl.CmRegisterCallbackEx': (APC_LEVEL, _page('wdm', 'CmRegisterCallbackEx')),
    'ntoskrnl.CmRegisterCallback': (APC_LEVEL, _page('wdm', 'CmRegisterCallback')),
    'ntoskrnl.CmUnRegisterCallback': (APC_LEVEL, _page('wdm', 'CmUnRegisterCallback')),
    'ntoskrnl.CmCallbackGetKeyObjectIDEx': (APC_LEVEL, _page('wdm', 'CmCallbackGetKeyObjectIDEx')),
    'ntoskrnl.CmCallbackReleaseKeyObjectIDEx': (APC_LEVEL, _page('wdm', 'CmCallbackReleaseKeyObjectIDEx')),
    'ntoskrnl.RtlUpcaseUnicodeChar': (APC_LEVEL, _page('wdm', 'RtlUpcaseUnicodeChar')),
    'ntoskrnl.ZwOpenKey': (PASSIVE_LEVEL, _page('wdm', 'ZwOpenKey')),
    'ntoskrnl.ZwQueryValueKey': (PASSIVE_LEVEL, _page('wdm', 'ZwQueryValueKey')),
    'ntoskrnl.ZwClose': (PASSIVE_LEVEL, _page('wdm', 'ZwClose')),
    # PnP notifications
    'ntoskrnl.IoRegisterPlugPlayNotification': (PASSIVE_LEVEL, _page('wdm', 'IoRegisterPlugPlayNotification')),
    'ntoskrnl.IoUnregisterPlugPlayNotificationEx': (PASSIVE_LEVEL,
                                                    _page('wdm', 'IoUnregisterPlugPlayNotificationEx')),
    'ntoskrnl.IoUnregisterPlugPlayNotification': (PASSIVE_LEVEL, _page('wdm', 'IoUnregisterPlugPlayNotification')),
    # device objects
    'ntoskrnl.IoCreateDevice': (APC_LEVEL, _page('wdm', 'IoCreateDevice')),
    'ntoskrnl.IoDeleteDevice': (APC_LEVEL, _page('wdm', 'IoDeleteDevice')),
    # synchronisation
    'ntoskrnl.KeAcquireSpinLockRaiseToDpc': (DISPATCH_LEVEL, _page('wdm', 'KeAcquireSpinLockRaiseToDpc')),
    'ntoskrnl.KeReleaseSpinLock': (DISPATCH_LEVEL, _page('wdm', 'KeReleaseSpinLock')),
    'ntoskrnl.KeInitializeEvent': (HIGH, _page('wdm', 'KeInitializeEvent') + ': any IRQL'),
    'ntoskrnl.KeSetEvent': (lambda m, a: _set_event(a), _page('wdm', 'KeSetEvent')
                            + ': <= DISPATCH_LEVEL; <= APC_LEVEL with Wait = TRUE (Remarks)'),
    'ntoskrnl.KeClearEvent': (DISPATCH_LEVEL, _page('wdm', 'KeClearEvent')),
    'ntoskrnl.KeResetEvent': (DISPATCH_LEVEL, _page('wdm', 'KeResetEvent')),
    'ntoskrnl.KeReadStateEvent': (DISPATCH_LEVEL, _page('wdm', 'KeReadStateEvent')),
    'ntoskrnl.KeWaitForSingleObject': (_wait_timeout, _page('wdm', 'KeWaitForSingleObject')
                                       + ': <= APC_LEVEL; <= DISPATCH_LEVEL with a zero timeout'),
    'ntoskrnl.KeDelayExecutionThread': (APC_LEVEL, _page('wdm', 'KeDelayExecutionThread')),
    'ntoskrnl.KeInitializeGuardedMutex': (APC_LEVEL, _page('wdm', 'KeInitializeGuardedMutex')),
    'ntoskrnl.KeAcquireGuardedMutex': (APC_LEVEL, _page('wdm', 'KeAcquireGuardedMutex')),
    'ntoskrnl.KeTryToAcquireGuardedMutex': (APC_LEVEL, _page('wdm', 'KeTryToAcquireGuardedMutex')),
    'ntoskrnl.KeReleaseGuardedMutex': (APC_LEVEL, _page('wdm', 'KeReleaseGuardedMutex')),
    'ntoskrnl.ExInitializeRundownProtection': (APC_LEVEL, _page('wdm', 'ExInitializeRundownProtection')),
    'ntoskrnl.ExReInitializeRundownProtection': (APC_LEVEL, _page('wdm', 'ExReInitializeRundownProtection')),
    'ntoskrnl.ExAcquireRundownProtection': (DISPATCH_LEVEL, _page('wdm', 'ExAcquireRundownProtection')
                                            + ' (DISPATCH_LEVEL with a nonpaged block, Remarks)'),
    'ntoskrnl.ExReleaseRundownProtection': (DISPATCH_LEVEL, _page('wdm', 'ExReleaseRundownProtection')
                                            + ' (DISPATCH_LEVEL with a nonpaged block, Remarks)'),
    'ntoskrnl.ExWaitForRundownProtectionRelease': (APC_LEVEL, _page('wdm', 'ExWaitForRundownProtectionRelease')),
    'ntoskrnl.ExRundownCompleted': (APC_LEVEL, _page('wdm', 'ExRundownCompleted')),
    # debugging and bugchecks
    'ntoskrnl.DbgPrintEx': (DIRQL, _page('wdm', 'DbgPrintEx') + ': <= DIRQL; Unicode conversions '
                            'only at PASSIVE_LEVEL'),
    'ntoskrnl.DbgPrint': (DIRQL, _page('wdm', 'DbgPrint') + ': <= DIRQL; Unicode conversions only at '
                          'PASSIVE_LEVEL'),
    'ntoskrnl.KeBugCheckEx': (HIGH, _page('wdm', 'KeBugCheckEx') + ': any IRQL'),
    # ETW: the driver's log as TraceLogging events (common::log::etw)
    'ntoskrnl.EtwRegister': (PASSIVE_LEVEL, _page('wdm', 'EtwRegister')),
    'ntoskrnl.EtwSetInformation': (PASSIVE_LEVEL, _page('wdm', 'EtwSetInformation')),
    'ntoskrnl.EtwWriteTransfer': (HIGH, _page('wdm', 'EtwWriteTransfer') + ': any IRQL (Remarks); '
                                  'above APC_LEVEL the data must not be pageable'),
    'ntoskrnl.EtwUnregister': (PASSIVE_LEVEL, _page('wdm', 'EtwUnregister')),
    # the C runtime the kernel exports: no reference page gives an IRQL; callable at any IRQL on
    # nonpaged memory (the drivers' memory is all nonpaged), so the highest the drivers reach.
    'ntoskrnl.memcpy': (DISPATCH_LEVEL, 'memcpy: C runtime exported by ntoskrnl.exe, no IRQL page; '
                        'nonpaged buffers at <= DISPATCH_LEVEL'),
    'ntoskrnl.memmove': (DISPATCH_LEVEL, 'memmove: as memcpy'),
    'ntoskrnl.memset': (DISPATCH_LEVEL, 'memset: as memcpy'),
    'ntoskrnl.memcmp': (DISPATCH_LEVEL, 'memcmp: as memcpy'),
    # WFP (fwpkclnt.sys)
    'fwpkclnt.FwpmEngineOpen0': (PASSIVE_LEVEL, _page('fwpmk', 'FwpmEngineOpen0')),
    'fwpkclnt.FwpmEngineClose0': (PASSIVE_LEVEL, _page('fwpmk', 'FwpmEngineClose0')),
    'fwpkclnt.FwpmTransactionBegin0': (PASSIVE_LEVEL, _MGMT + ' (FwpmTransactionBegin0: no DDI page)'),
    'fwpkclnt.FwpmTransactionCommit0': (PASSIVE_LEVEL, _MGMT + ' (FwpmTransactionCommit0: no DDI page)'),
    'fwpkclnt.FwpmTransactionAbort0': (PASSIVE_LEVEL, _MGMT + ' (FwpmTransactionAbort0: no DDI page)'),
    'fwpkclnt.FwpmSubLayerAdd0': (PASSIVE_LEVEL, _MGMT + ' (FwpmSubLayerAdd0: no DDI page)'),
    'fwpkclnt.FwpmSubLayerDeleteByKey0': (PASSIVE_LEVEL, _MGMT + ' (FwpmSubLayerDeleteByKey0: no DDI page)'),
    'fwpkclnt.FwpmCalloutAdd0': (PASSIVE_LEVEL, _page('fwpmk', 'FwpmCalloutAdd0')),
    'fwpkclnt.FwpmCalloutDeleteByKey0': (PASSIVE_LEVEL, _page('fwpmk', 'FwpmCalloutDeleteByKey0')),
    'fwpkclnt.FwpmCalloutDeleteById0': (PASSIVE_LEVEL, _page('fwpmk', 'FwpmCalloutDeleteById0')),
    'fwpkclnt.FwpmFilterAdd0': (PASSIVE_LEVEL, _MGMT + ' (FwpmFilterAdd0: no DDI page)'),
    'fwpkclnt.FwpmFilterDeleteById0': (PASSIVE_LEVEL, _MGMT + ' (FwpmFilterDeleteById0: no DDI page)'),
    'fwpkclnt.FwpmFilterDeleteByKey0': (PASSIVE_LEVEL, _MGMT + ' (FwpmFilterDeleteByKey0: no DDI page)'),
    'fwpkclnt.FwpsCalloutRegister1': (PASSIVE_LEVEL, _page('fwpsk', 'FwpsCalloutRegister1')),
    'fwpkclnt.FwpsCalloutUnregisterById0': (PASSIVE_LEVEL, _page('fwpsk', 'FwpsCalloutUnregisterById0')),
    'fwpkclnt.FwpsFlowAssociateContext0': (DISPATCH_LEVEL, _page('fwpsk', 'FwpsFlowAssociateContext0')),
    'fwpkclnt.FwpsFlowRemoveContext0': (DISPATCH_LEVEL, _page('fwpsk', 'FwpsFlowRemoveContext0')),
    # KMDF: the loader's exports (no reference page: the framework's stub calls them from DriverEntry
    # and DriverUnload, both PASSIVE_LEVEL; Microsoft's published KMDF source, FxLibraryCommon /
    # wdfldr) and the framework functions called through its table (each has a reference page).
    'wdfldr.WdfVersionBind': (PASSIVE_LEVEL, 'WdfVersionBind: wdfldr export, called from DriverEntry '
                              '(PASSIVE_LEVEL); no reference page'),
    'wdfldr.WdfVersionUnbind': (PASSIVE_LEVEL, 'WdfVersionUnbind: wdfldr export, called from '
                                'DriverUnload (PASSIVE_LEVEL); no reference page'),
    'wdfldr.WdfDriverCreate': (PASSIVE_LEVEL, _page('wdfdriver', 'WdfDriverCreate')),
    'wdfldr.WdfDeviceCreate': (PASSIVE_LEVEL, _page('wdfdevice', 'WdfDeviceCreate')),
    'wdfldr.WdfDeviceWdmGetDeviceObject': (DISPATCH_LEVEL, _page('wdfdevice', 'WdfDeviceWdmGetDeviceObject')),
    'wdfldr.WdfControlDeviceInitAllocate': (PASSIVE_LEVEL, _page('wdfcontrol', 'WdfControlDeviceInitAllocate')),
    'wdfldr.WdfControlFinishInitializing': (DISPATCH_LEVEL, _page('wdfcontrol', 'WdfControlFinishInitializing')),
    'wdfldr.WdfDeviceInitFree': (DISPATCH_LEVEL, _page('wdfdevice', 'WdfDeviceInitFree')),
    'wdfldr.WdfDeviceInitSetDeviceType': (DISPATCH_LEVEL, _page('wdfdevice', 'WdfDeviceInitSetDeviceType')),
    'wdfldr.WdfDeviceInitSetCharacteristics': (DISPATCH_LEVEL,
                                               _page('wdfdevice', 'WdfDeviceInitSetCharacteristics')),
    'wdfldr.WdfObjectDelete': (DISPATCH_LEVEL, _page('wdfobject', 'WdfObjectDelete')
                               + ' (a control device: PASSIVE_LEVEL, checked by the model)'),
    'wdfldr.FxDriverUnload': (PASSIVE_LEVEL, "the framework's unload routine, DriverObject->DriverUnload "
                              '(DRIVER_UNLOAD runs at PASSIVE_LEVEL: ' + _DDI
                              + 'wdm/nc-wdm-driver_unload)'),
}

# The IRQL the harness calls each family's callbacks at: (IRQL, documentation).
CALLBACKS = {
    'classifyFn': (DISPATCH_LEVEL, _DDI + 'fwpsk/nc-fwpsk-fwps_callout_classify_fn1: IRQL <= '
                   'DISPATCH_LEVEL'),
    'flowDeleteFn': (DISPATCH_LEVEL, _DDI + 'fwpsk/nc-fwpsk-fwps_callout_flow_delete_notify_fn0: '
                     'IRQL <= DISPATCH_LEVEL'),
    'notifyFn': (DISPATCH_LEVEL, _DDI + 'fwpsk/nc-fwpsk-fwps_callout_notify_fn1: IRQL <= DISPATCH_LEVEL'),
    'ETW enable callback': (PASSIVE_LEVEL, _DDI + 'wdm/nc-wdm-etwenablecallback: called by the '
                            'session controller enabling or disabling the provider, at PASSIVE_LEVEL '
                            '(docs/notes/etw-log.md §4)'),
    'RegistryCallback': (PASSIVE_LEVEL, _DDI + 'wdm/nc-wdm-ex_callback_function: PASSIVE_LEVEL'),
    'PnP notification callback': (PASSIVE_LEVEL, _DDI + 'wdm/nf-wdm-ioregisterplugplaynotification, '
                                  'Remarks: "The PnP manager calls driver callback routines at IRQL = '
                                  'PASSIVE_LEVEL"'),
    'callback object routine': (DISPATCH_LEVEL, _DDI + 'wdm/nf-wdm-exregistercallback: the IRQL '
                                'ExNotifyCallback was called at (<= DISPATCH_LEVEL); the scenario '
                                'step says which'),
    'EvtDriverUnload': (PASSIVE_LEVEL, _DDI + 'wdfdriver/nc-wdfdriver-evt_wdf_driver_unload: PASSIVE_LEVEL'),
}

UNICODE_CONVERSIONS = ('%C', '%S', '%lc', '%ls', '%wc', '%ws', '%wZ')


def maximum(machine, routine, argv):
    """(maximum IRQL, condition text) for a call of `routine`, or None if it has no row."""
    row = ROUTINES.get(routine)
    if row is None:
        return None
    limit, _doc = row
    if callable(limit):
        return limit(machine, argv)
    return limit, ''


def unicode_conversions(fmt):
    """The Unicode conversions in a DbgPrint format (after flags, width and precision)."""
    found = []
    i = 0
    while i < len(fmt):
        if fmt[i] != '%':
            i += 1
            continue
        j = i + 1
        if j < len(fmt) and fmt[j] == '%':
            i = j + 1
            continue
        while j < len(fmt) and (fmt[j] in '-+ 0#.*' or fmt[j].isdigit()):
            j += 1
        spec = fmt[j:j + 2]
        if spec in ('lc', 'ls', 'wc', 'ws', 'wZ'):
            found.append('%' + spec)
            j += 2
        elif fmt[j:j + 1] in ('C', 'S'):
            found.append('%' + fmt[j])
            j += 1
        i = j
    return found


class IrqlChecks:
    """The family that holds the table's verdicts for the run (attached last: it also observes
    every routine of the table that no model attached, so speakeasy's own handlers are checked)."""

    def __init__(self, machine, config=None):
        self.m = machine
        machine.irql_checks = self
        self.calls = 0
        self.violations = []          # text
        for routine in ROUTINES:
            module, name = routine.split('.', 1)
            if routine in machine.routines or not _speakeasy_has(machine, module, name):
                continue
            machine.attach(module, name, 0, self._observe, handled_by='speakeasy')

    @staticmethod
    def _observe(argv, orig):
        return orig(list(argv)) if orig else 0

    def check_call(self, routine, argv):
        """Called by Machine._dispatch for every call: stops the run above the routine's maximum."""
        self.calls += 1
        limit = maximum(self.m, routine, argv)
        if limit is None:
            return
        top, condition = limit
        if self.m.irql > top:
            text = '%s called at %s during %s; its documentation allows IRQL <= %s%s (%s)' % (
                routine, irql_name(self.m.irql), self.m.phase, irql_name(top),
                ' for ' + condition if condition else '', ROUTINES[routine][1])
            self.violations.append(text)
            raise bugcheck(IRQL_NOT_LESS_OR_EQUAL, 'IRQL_NOT_LESS_OR_EQUAL', text, self.m.irql, top)

    def report(self, text):
        """A rule of the table broken without stopping the run (a Unicode conversion above PASSIVE)."""
        self.violations.append(text)

    def audit(self):
        missing = ['%s.%s' % (dll, name) for dll, name in imports(self.m)
                   if '%s.%s' % (dll, name) not in ROUTINES]
        problems = list(self.violations)
        if missing:
            problems.append('imported but not in the IRQL table (emukernel/irql_table.py: add a row '
                            'with the routine\'s documented IRQL and its page): ' + ', '.join(missing))
        return [(IRQL_CHECK, not problems, '; '.join(problems) if problems else
                 '%d call(s) checked against the documented IRQL of %d imported routine(s)'
                 % (self.calls, len(imports(self.m))))]


def _speakeasy_has(machine, module, name):
    """Whether speakeasy has its own handler for the routine (then the harness may observe it)."""
    try:
        _mod, attrs = machine.se.emu.api.get_export_func_handler(module, name)
    except Exception:  # no emulator (model unit tests)
        return False
    return bool(attrs)


def imports(machine):
    """[(module, name)] the image imports (module without extension, lower case)."""
    cached = getattr(machine, '_imports', None)
    if cached is not None:
        return cached
    out = []
    module = getattr(machine, 'module', None)
    for entry in getattr(module, 'DIRECTORY_ENTRY_IMPORT', None) or []:
        dll = entry.dll.decode('ascii', 'replace').split('.')[0].lower()
        for imp in entry.imports:
            if imp.name:
                out.append((dll, imp.name.decode('ascii', 'replace')))
    machine._imports = out
    return out
