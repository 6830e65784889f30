"""A seccomp filter a render worker installs on itself before ``import bpy`` (Linux).

The worker never needs to debug other processes, mount file systems, load kernel modules,
make namespaces, use the kernel keyring, BPF, perf events, userfaultfd or io_uring — the
calls local privilege-escalation exploits lean on. If a crafted .blend ever took over a
worker through a bug in a file reader, these calls fail with EPERM. It is a deny list (a
Blender build may need any ordinary call), built here as classic BPF so no library is
needed; numbers are from the kernel's ``asm/unistd_64.h`` and ``asm-generic/unistd.h``.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
import sys

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "keyctl", "add_key",
          "request_key", "mount", "umount2", "pivot_root", "chroot", "kexec_load",
          "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
          "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
          "io_uring_register", "unshare", "setns", "acct", "swapon", "swapoff", "reboot",
          "syslog", "quotactl", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
          "uselib", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
          "mount_setattr")
X86_64 = {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "keyctl": 250,
          "add_key": 248, "request_key": 249, "mount": 165, "umount2": 166,
          "pivot_root": 155, "chroot": 161, "kexec_load": 246, "kexec_file_load": 320,
          "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321,
          "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
          "io_uring_enter": 426, "io_uring_register": 427, "unshare": 272, "setns": 308,
          "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169, "syslog": 103,
          "quotactl": 179, "open_by_handle_at": 304, "name_to_handle_at": 303,
          "lookup_dcookie": 212, "uselib": 134, "open_tree": 428, "move_mount": 429,
          "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442}
AARCH64 = {"ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "keyctl": 219,
           "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "pivot_root": 41,
           "chroot": 51, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
           "finit_module": 273, "delete_module": 106, "bpf": 280, "perf_event_open": 241,
           "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
           "io_uring_register": 427, "unshare": 97, "setns": 268, "acct": 89, "swapon": 224,
           "swapoff": 225, "reboot": 142, "syslog": 116, "quotactl": 60,
           "open_by_handle_at": 265, "name_to_handle_at": 264, "lookup_dcookie": 18,
           "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
           "fsmount": 432, "fspick": 433, "mount_setattr": 442}
# machine -> (AUDIT_ARCH_*, syscall numbers); <linux/audit.h>
ARCHES = {"x86_64": (0xC000003E, X86_64), "aarch64": (0xC00000B7, AARCH64)}
X32_BIT = 0x40000000  # x86_64's x32 ABI sets this bit: another numbering, refused whole

# Classic BPF opcodes (<linux/filter.h>) and seccomp return values (<linux/seccomp.h>).
LD_W_ABS, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str) -> bytes:
    """The filter for ``machine`` (``platform.machine()``) as ``struct sock_filter[]``."""
    arch, numbers = ARCHES[machine]
    denied = sorted({numbers[name] for name in DENIED if name in numbers})
    # Layout: arch check, load nr, [x32 check], one jeq per denied call, allow, deny.
    checks = [(JGE_K, X32_BIT)] if machine == "x86_64" else []
    checks += [(JEQ_K, nr) for nr in denied]
    deny_at = 4 + len(checks) + 1  # index of the final "return EPERM", after "allow"
    code = [_insn(LD_W_ABS, 4), _insn(JEQ_K, arch, 1, 0), _insn(RET_K, RET_ERRNO | errno.EPERM),
            _insn(LD_W_ABS, 0)]
    for i, (op, k) in enumerate(checks):
        here = 4 + i
        code.append(_insn(op, k, deny_at - here - 1, 0))
    code += [_insn(RET_K, RET_ALLOW), _insn(RET_K, RET_ERRNO | errno.EPERM)]
    return b"".join(code)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> bool:
    """Install the filter on this process (and its future threads and children).

    Returns False where there is none (not Linux, another CPU); raises OSError if the
    kernel refuses it.
    """
    machine = platform.machine()
    if not sys.platform.startswith("linux") or machine not in ARCHES:
        return False
    code = program(machine)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
            PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the worker's seccomp filter")
    return True
