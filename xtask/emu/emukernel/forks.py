"""Each task in a child forked from this process, at most `jobs` at a time, results in task order.

A run must start from a machine nobody ran yet. Loading the image into speakeasy (parsing it,
building the kernel's structures) costs a tenth of a second and is the same for every run of a
driver, so the harness loads it once (`machine.Loaded`) and forks a child per run from that state:
the child gets its own copy of everything (the emulator's memory included, copy on write), runs,
and sends back its result; the parent's copy is never run. This also runs independent runs side by
side on the machine's cores. Results come back pickled over a pipe; an exception in a child is
raised again in the parent when its turn comes.
"""

import gc
import os
import pickle
import selectors
import sys
import traceback


class ChildError(Exception):
    """A child died without a result, or its exception could not be sent back."""


def fork_map(function, tasks, jobs, settle=False):
    """Yields `function(task)` for each task, in order; each call in its own forked child. With
    `settle`, yields (True, result) or (False, exception) instead of raising."""
    jobs = max(1, jobs)
    results = {}
    running = {}           # read fd -> (index, pid, chunks)
    selector = selectors.DefaultSelector()
    started = 0
    try:
        for wanted in range(len(tasks)):
            while wanted not in results:
                while started < len(tasks) and len(running) < jobs:
                    fd, pid = _start(function, tasks[started])
                    running[fd] = (started, pid, [])
                    selector.register(fd, selectors.EVENT_READ)
                    started += 1
                for key, _events in selector.select():
                    fd = key.fd
                    index, pid, chunks = running[fd]
                    data = os.read(fd, 1 << 16)
                    if data:
                        chunks.append(data)
                        continue
                    selector.unregister(fd)
                    os.close(fd)
                    del running[fd]
                    _pid, status = os.waitpid(pid, 0)
                    results[index] = _outcome(b''.join(chunks), status)
            ok, value = results.pop(wanted)
            if settle:
                yield ok, value
            elif not ok:
                raise value
            else:
                yield value
    finally:
        for fd, (_index, pid, _chunks) in running.items():
            selector.unregister(fd)
            os.close(fd)
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        selector.close()


def _start(function, task):
    read, write = os.pipe()
    # Everything the parent holds (the loaded image, speakeasy's structures, the modules) is
    # long-lived: frozen, the child's collections never walk it (a 1,000-flow run spent a tenth of
    # its time there) and never touch its pages (copy on write). The `gc.freeze` documentation
    # recommends exactly this before a fork without exec.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the child: run, send (ok, value), leave without running the parent's cleanup
        code = 0
        try:
            os.close(read)
            try:
                message = (True, function(task))
            except Exception as e:  # sent back, raised in the parent
                message = (False, e)
            try:
                data = pickle.dumps(message)
            except Exception:
                data = pickle.dumps((False, ChildError(traceback.format_exc())))
            with os.fdopen(write, 'wb') as out:
                out.write(data)
        except BaseException:
            code = 70
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    os.close(write)
    return read, pid


def _outcome(data, status):
    if not data:
        return False, ChildError('a run process ended without a result (wait status %d)' % status)
    return pickle.loads(data)
