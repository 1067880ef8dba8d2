"""A seccomp filter for the process that runs model-written code (`sandbox_child.py` loads this file by
path; it imports nothing from the lab).

Why a kernel filter and not only the audit hook: an audit hook is Python code that Python code can
reach, and some system calls raise no audit event at all (`os.mknod`, `os.mkfifo`,
`_posixsubprocess.fork_exec`). A seccomp filter is checked by the kernel on every system call and
cannot be removed by the process it was installed in (nor by its children: it is inherited). It
refuses, with EPERM, every system call a program that computes an answer has no use for:

- new processes and programs (`fork`, `vfork`, `clone`, `clone3`, `execve`, `execveat`);
- the network (`socket`, `socketpair`, `connect`, `bind`, `listen`, `accept`);
- creating, changing or removing files (`mknod`, `mkdir`, `unlink`, `rename`, `link`, `symlink`,
  `chmod`, `chown`, `truncate`, `utime*`, `*xattr` writes, `creat`, and `open`/`openat` with a write,
  create, truncate or append flag; `openat2`, whose flags the filter cannot read);
- other processes (`kill`, `tkill`, `tgkill`, `ptrace`, `process_vm_readv`/`writev`, pidfds);
- the limits and identity (`setrlimit`, `prlimit64` with a new limit, `set*id`, `capset`), namespaces,
  mounts, modules, keys, BPF, io_uring, perf, SysV/POSIX IPC, `memfd_create`;
- other processes' scheduling and memory (`setpriority`, `sched_set*`, `ioprio_set`, `migrate_pages`,
  `move_pages`, `setpgid`), the clock (`clock_settime`, `settimeofday`, `adjtimex`, `clock_adjtime`), and
  `syslog`, `vhangup`, `modify_ldt`;
- any other system-call ABI (x32 numbers; a 32-bit `int 0x80` call kills the process).

It is a deny list (what a program could harm the host with), not an allow list: CPython and numpy's
needs vary by version, and a refused call they need would fail legitimate programs. Only x86_64 has a
table here (the system-call numbers differ per architecture; a test checks this
table against the kernel headers where they are installed). Elsewhere `install` returns False and the
sandbox says the filter is absent.
"""

import ctypes
import os
import struct
import sys

# x86_64 system-call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
X86_64 = {
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53, "accept4": 288,
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435,
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "process_madvise": 440,
    "creat": 85, "mknod": 133, "mknodat": 259, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "unlink": 87,
    "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316, "link": 86, "linkat": 265,
    "symlink": 88, "symlinkat": 266, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
    "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "truncate": 76, "ftruncate": 77,
    "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189,
    "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "openat2": 437,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "fanotify_init": 300, "memfd_create": 319,
    "setrlimit": 160, "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
    "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "capset": 126,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "setns": 308, "unshare": 272,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "sethostname": 170, "setdomainname": 171, "acct": 163, "quotactl": 179, "iopl": 172, "ioperm": 173,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249, "personality": 135,
    "shmget": 29, "semget": 64, "msgget": 68, "mq_open": 240, "shmctl": 31, "semctl": 66, "msgctl": 71,
    "mq_unlink": 241, "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "sched_setattr": 314, "ioprio_set": 251, "migrate_pages": 256, "move_pages": 279,
    "setpgid": 109, "clock_settime": 227, "settimeofday": 164, "adjtimex": 159, "clock_adjtime": 305,
    "syslog": 103, "vhangup": 153, "modify_ldt": 154, "_sysctl": 156, "uselib": 134, "lookup_dcookie": 212,
    "process_mrelease": 448, "quotactl_fd": 443,
}
OPEN, OPENAT, PRLIMIT64 = 2, 257, 302  # refused only with write flags / a new limit (checked below)
X32_BIT = 0x40000000
AUDIT_ARCH_X86_64 = 0xC000003E
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE on Linux.
WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000

# Classic BPF as seccomp reads it: struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];}.
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1
_NR, _ARCH = 0, 4


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of system-call argument `index` (little-endian)."""
    return 16 + 8 * index


def _arg_high(index: int) -> int:
    return _arg_low(index) + 4


def program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions: the checks fall through to ALLOW, and every
    refusal jumps past it to the last instruction (EPERM)."""
    body: list[tuple] = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
                         (_RET_K, 0, 0, _RET_KILL_PROCESS), (_LD_W_ABS, 0, 0, _NR), ("deny-if-ge", X32_BIT)]
    body += [("deny-if-eq", number) for number in sorted(set(X86_64.values()))]
    # open(path, flags) / openat(dirfd, path, flags): refused when a write flag is set.
    for number, flags_arg in ((OPEN, 1), (OPENAT, 2)):
        body += [(_JEQ_K, 0, 3, number), (_LD_W_ABS, 0, 0, _arg_low(flags_arg)), ("deny-if-set", WRITE_FLAGS),
                 (_LD_W_ABS, 0, 0, _NR)]
    # prlimit64(pid, resource, new_limit, old_limit): reading (new_limit NULL) is how getrlimit works.
    body += [(_JEQ_K, 0, 4, PRLIMIT64), (_LD_W_ABS, 0, 0, _arg_low(2)), ("deny-unless-eq", 0),
             (_LD_W_ABS, 0, 0, _arg_high(2)), ("deny-unless-eq", 0)]
    deny = len(body) + 1  # after the ALLOW that ends the checks
    instructions = []
    for position, item in enumerate(body):
        if isinstance(item[0], str):
            kind, value = item
            to_deny = deny - position - 1
            if to_deny > 255:
                raise ValueError("seccomp program too long for an 8-bit jump")
            code, jt, jf = {"deny-if-eq": (_JEQ_K, to_deny, 0), "deny-if-ge": (_JGE_K, to_deny, 0),
                            "deny-if-set": (_JSET_K, to_deny, 0), "deny-unless-eq": (_JEQ_K, 0, to_deny)}[kind]
            instructions.append((code, jt, jf, value))
        else:
            instructions.append(item)
    return instructions + [(_RET_K, 0, 0, _RET_ALLOW), (_RET_K, 0, 0, _RET_EPERM)]


def supported() -> bool:
    """Whether this file has a system-call table for this machine (x86_64 Linux)."""
    return sys.platform.startswith("linux") and os.uname().machine == "x86_64"


def install() -> bool:
    """Install the filter on this process (and everything it would start). False where there is no
    table for this machine or the kernel refuses; the caller reports which."""
    if not supported():
        return False
    instructions = program()
    filters = b"".join(struct.pack("<HBBI", *instruction) for instruction in instructions)
    buffer = ctypes.create_string_buffer(filters, len(filters))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(instructions), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) == 0
