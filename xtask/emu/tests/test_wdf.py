"""The documented rules of the KMDF model (binding, WdfDriverCreate, control devices, unload)."""
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))

from emukernel.errors import KernelStop  # noqa: E402
from emukernel.io import Devices  # noqa: E402
from emukernel.wdf import (DISPLACE_DRIVER_UNLOAD_OFFSET, DRIVER_UNLOAD_OFFSET, MODELLED_SLOTS,  # noqa: E402
                           STATUS_DRIVER_INTERNAL_ERROR, STATUS_INFO_LENGTH_MISMATCH,
                           STATUS_INVALID_PARAMETER, Wdf, sddl_is_restrictive)
from test_wfp import DRIVER, WfpMachine  # noqa: E402

EVT_UNLOAD = 0x5400
TABLE = 0x20000
GLOBALS = 0x21000


class SpeakeasyWdf:
    """What speakeasy's wdfldr handlers do for the calls the model observes."""

    def __init__(self, m):
        self.m = m
        self.wdf_devices = {}

    def bind(self, args):
        self.m.write_u64(self.m.read_u64(args[2] + 32), TABLE)   # *FuncTable = its table
        self.m.write_u64(args[3], GLOBALS)
        return 0

    def device_create(self, args):
        handle = 0x30 + 4 * len(self.wdf_devices)
        self.wdf_devices[handle] = type('Dev', (), {'device_object_addr': 0xD000 + handle})()
        self.m.write_u64(args[3], handle)
        return 0


class Api:
    def __init__(self, handlers):
        self.handlers = handlers

    def get_export_func_handler(self, module, name):
        return self.handlers, None


class WdfModelTest(unittest.TestCase):
    def setUp(self):
        self.m = WfpMachine()
        self.speakeasy = SpeakeasyWdf(self.m)
        self.m.emu.api = Api(self.speakeasy)
        self.devices = Devices(self.m)
        self.wdf = Wdf(self.m)
        self.out = self.m.alloc(8, 'out')
        self.table_ptr = self.m.alloc(8, 'WdfFunctions')
        self.driver_object = DRIVER
        self.component = self.m.alloc(32, 'component')
        self.m.write(self.component, 'KmdfLibrary\0'.encode('utf-16-le'))

    def call(self, name, *args, orig=None):
        return self.m.routines[name](list(args), orig)

    def bind_info(self, size=48, minor=15, count=444, table=True, component=None):
        info = self.m.alloc(48, 'bind')
        self.m.write(info, struct.pack('<IIQIIIIQQ', size, 0, self.component if component is None else component,
                                       1, minor, 0, count, self.table_ptr if table else 0, 0))
        return info

    def bind(self, info=None):
        info = self.bind_info() if info is None else info
        self.info = info
        return self.call('WdfVersionBind', DRIVER, 0, info, self.out, orig=self.speakeasy.bind)

    def config(self, size=32, device_add=0, unload=EVT_UNLOAD, flags=1):
        block = self.m.alloc(32, 'config')
        self.m.write(block, struct.pack('<IIQQII', size, 0, device_add, unload, flags, 0))
        return block

    def driver_create(self, **config):
        return self.call('WdfDriverCreate', GLOBALS, self.driver_object, 0, 0, self.config(**config), self.out,
                         orig=lambda args: 0)

    def string(self, text):
        data = text.encode('utf-16-le')
        buf = self.m.alloc(len(data) + 2, 's')
        self.m.write(buf, data)
        us = self.m.alloc(16, 'us')
        self.m.write(us, struct.pack('<HHIQ', len(data), len(data), 0, buf))
        return us

    def failed(self):
        return {check: detail for check, good, detail in self.wdf.audit() if not good}

    # ---- binding ------------------------------------------------------------------------------

    def test_the_bind_info_is_checked_as_the_framework_checks_it(self):
        for info, why in ((self.bind_info(count=445), 'released table size'),
                          (self.bind_info(size=40), 'Size 40'),
                          (self.bind_info(minor=35), 'version 1.35'),
                          (self.bind_info(table=False), 'FuncTable is NULL'),
                          (self.bind_info(component=self.string('Other') + 0), 'Component')):
            self.assertEqual(self.bind(info), STATUS_INVALID_PARAMETER, why)
            self.assertIn(why, self.m.log[-1])
        self.assertEqual(self.bind(), 0)
        self.assertEqual(self.m.read_u64(self.table_ptr), TABLE, 'the pointer variable holds the table')
        for index, (name, _argc) in MODELLED_SLOTS.items():
            self.assertNotEqual(self.m.read_u64(TABLE + 8 * index), 0, name)

    def test_unbind_must_match_the_bind_and_is_the_last_call(self):
        self.bind()
        self.assertIn('still bound', self.failed()['bound to KMDF, then unbound (WdfVersionUnbind)'])
        with self.assertRaisesRegex(KernelStop, 'not the bind info'):
            self.call('WdfVersionUnbind', 0, self.info + 8, GLOBALS)
        self.call('WdfVersionUnbind', 0, self.info, GLOBALS)
        with self.assertRaisesRegex(KernelStop, 'after WdfVersionUnbind'):
            self.driver_create()
        with self.assertRaisesRegex(KernelStop, 'twice'):
            self.call('WdfVersionUnbind', 0, self.info, GLOBALS)

    # ---- WdfDriverCreate ----------------------------------------------------------------------

    def test_driver_create_checks_its_config(self):
        self.bind()
        self.assertEqual(self.driver_create(size=24), STATUS_INFO_LENGTH_MISMATCH)
        self.assertEqual(self.driver_create(device_add=0x5000), STATUS_INVALID_PARAMETER,
                         'a non-PnP driver has no EvtDriverDeviceAdd')
        self.assertEqual(self.driver_create(flags=0x4), STATUS_INVALID_PARAMETER)
        self.assertEqual(self.driver_create(), 0)
        self.assertEqual(self.driver_create(), STATUS_DRIVER_INTERNAL_ERROR, 'a second WdfDriverCreate')

    def test_a_non_pnp_driver_is_unloadable_only_with_evt_driver_unload(self):
        self.bind()
        self.driver_create(unload=0)
        self.assertEqual(self.m.read_u64(DRIVER + DRIVER_UNLOAD_OFFSET), 0)
        self.assertEqual(self.m.read(GLOBALS + DISPLACE_DRIVER_UNLOAD_OFFSET, 1), b'\0')

    def test_the_framework_unload_calls_evt_driver_unload(self):
        self.bind()
        self.driver_create()
        handle = self.m.read_u64(self.out)
        self.assertNotEqual(handle, 0, 'WdfDriverCreate writes *Driver (speakeasy does not)')
        self.assertEqual(self.m.read_u64(GLOBALS), handle, 'WDF_DRIVER_GLOBALS.Driver')
        self.assertEqual(self.m.read(GLOBALS + DISPLACE_DRIVER_UNLOAD_OFFSET, 1), b'\1')
        self.assertNotEqual(self.m.read_u64(DRIVER + DRIVER_UNLOAD_OFFSET), 0)
        self.m.phase = 'DriverUnload'
        self.call('FxDriverUnload', DRIVER)
        self.assertEqual(self.m.callbacks, [(EVT_UNLOAD, [handle])])
        with self.assertRaisesRegex(KernelStop, 'twice'):
            self.call('FxDriverUnload', DRIVER)
        self.call('WdfVersionUnbind', 0, self.info, GLOBALS)
        self.assertEqual(self.failed(), {})

    def test_unbinding_without_the_framework_unload_is_reported(self):
        self.bind()
        self.driver_create()
        self.m.phase = 'DriverUnload'
        self.call('WdfVersionUnbind', 0, self.info, GLOBALS)
        self.assertIn('0 EvtDriverUnload call(s)', self.failed()[
            "the stub ran the framework's unload routine (EvtDriverUnload) before unbinding"])

    # ---- control devices ----------------------------------------------------------------------

    def control_device(self, sddl='D:P'):
        driver = self.m.read_u64(self.out)
        init = self.call('WdfControlDeviceInitAllocate', GLOBALS, driver, self.string(sddl))
        self.assertNotEqual(init, 0)
        holder = self.m.alloc(8, 'init')
        self.m.write_u64(holder, init)
        self.call('WdfDeviceInitSetCharacteristics', GLOBALS, init, 0x100, 0)
        status = self.call('WdfDeviceCreate', GLOBALS, holder, 0, self.out, orig=self.speakeasy.device_create)
        return status, init, holder, self.m.read_u64(self.out)

    def test_a_control_device_consumes_its_init_and_is_deleted_by_the_driver(self):
        self.bind()
        self.driver_create()
        status, init, holder, device = self.control_device()
        self.assertEqual(status, 0)
        self.assertEqual(self.m.read_u64(holder), 0, 'WdfDeviceCreate NULLs *DeviceInit on success')
        with self.assertRaisesRegex(KernelStop, 'consumed by WdfDeviceCreate'):
            self.call('WdfDeviceInitFree', GLOBALS, init)
        failed = self.failed()
        self.assertIn('control device: WdfControlFinishInitializing called', failed)
        self.assertIn('control device deleted by the driver (WdfObjectDelete)', failed)
        self.call('WdfControlFinishInitializing', GLOBALS, device)
        wdm = self.devices.live(0xD000 + device)
        self.assertIsNotNone(wdm, 'its WDM device object is known to the device registry')
        self.assertTrue(wdm.characteristics & 0x80, 'a control device always gets an autogenerated name')
        self.call('WdfObjectDelete', GLOBALS, device)
        self.assertIsNone(self.devices.live(0xD000 + device))
        with self.assertRaisesRegex(KernelStop, 'WDF_VIOLATION'):
            self.call('WdfObjectDelete', GLOBALS, device)
        self.call('WdfVersionUnbind', 0, self.info, GLOBALS)
        self.assertEqual(self.failed(), {})

    def test_control_device_rules(self):
        self.bind()
        self.driver_create()
        driver = self.m.read_u64(self.out)
        with self.assertRaisesRegex(KernelStop, 'SDDL string is required'):
            self.call('WdfControlDeviceInitAllocate', GLOBALS, driver, 0)
        with self.assertRaisesRegex(KernelStop, 'the framework deletes the driver object'):
            self.call('WdfObjectDelete', GLOBALS, driver)
        init = self.call('WdfControlDeviceInitAllocate', GLOBALS, driver, self.string('D:P'))
        self.assertIn('leaked', self.failed()['every WDFDEVICE_INIT consumed by WdfDeviceCreate or freed'])
        self.call('WdfDeviceInitFree', GLOBALS, init)
        self.assertNotIn('every WDFDEVICE_INIT consumed by WdfDeviceCreate or freed', self.failed())
        with self.assertRaisesRegex(KernelStop, 'is not the driver globals'):
            self.call('WdfControlDeviceInitAllocate', GLOBALS + 8, driver, self.string('D:P'))

    def test_an_open_dacl_is_reported(self):
        self.bind()
        self.driver_create()
        self.control_device(sddl='D:P(A;;GA;;;WD)')
        self.assertIn('GA;;;WD', self.failed()['control device DACL: kernel-only or SYSTEM and Administrators only'])

    def test_restrictive_sddl(self):
        self.assertTrue(sddl_is_restrictive('D:P'))
        self.assertTrue(sddl_is_restrictive('D:P(A;;GA;;;SY)(A;;GA;;;BA)'))
        self.assertFalse(sddl_is_restrictive('D:P(A;;GA;;;SY)(A;;GRGW;;;BU)'), 'users may open it')
        self.assertFalse(sddl_is_restrictive('D:(A;;GA;;;SY)'), 'not protected: inherits ACEs')
        self.assertFalse(sddl_is_restrictive('D:P(A;;GA;;;WD)'), 'everyone')


if __name__ == '__main__':
    unittest.main()
