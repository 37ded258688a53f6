"""Confinement layers a freshly forked worker applies to itself before it runs a line of a submission.

Each layer is one small function that applies what this kernel and this process allow and returns a short
description of what it managed ("own uid and gid", "landlock abi 7", "unavailable: …"); the worker sends the
record to the parent before it reads the submission, so the record is written by our code alone. Order
matters and is fixed by :func:`apply_all`: the Landlock ruleset is built while we can still open every path,
privileges are dropped, ``PR_SET_NO_NEW_PRIVS`` is set (Landlock and seccomp need it when unprivileged), then
Landlock and seccomp are enforced. Anchors: the kernel's ``samples/landlock/sandboxer.c`` (ABI detection,
best-effort downgrade, one rule per path) and libseccomp's filter API.

Everything here uses only the standard library and ctypes, runs in the fork server and its workers, and is
imported by the parent for :func:`landlock_abi` and :func:`missing_layers` only (no side effects on import).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import stat
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LAYERS",
    "RuntimeView",
    "apply_all",
    "drop_privileges",
    "landlock_abi",
    "missing_layers",
    "set_no_new_privs",
    "survivors",
    "worker_ids",
]

# The layers, in the order of the record. "processes" is seccomp's (no fork, no exec, no sockets).
LAYERS = ("user", "no_new_privs", "filesystem", "network", "signals", "processes")

# Unprivileged ids for workers: BASE + the worker's pid. A pid is below 2**22 (the kernel's PID_MAX_LIMIT), so
# ids stay in [BASE, BASE + 2**22), below 2**31 (ids above it confuse some tools), and far above any id a
# distribution assigns (system users < 1000, regular ones < 60000, systemd's dynamic ones < 65520), so no
# file on the machine belongs to a worker, and two live workers never share an id (their pids differ).
ID_BASE = 2_000_000_000
OWN_IDS = "own uid and gid"

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38

# --- Landlock (include/uapi/linux/landlock.h) ---------------------------------------------------------------
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
# Rights each ABI handles: 13 in ABI 1, REFER (1 << 13) from 2, TRUNCATE from 3, IOCTL_DEV from 5.
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV  # valid on a file
_READ = _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def landlock_abi() -> int:
    """The Landlock ABI version of this kernel, 0 when it has none (or it is disabled)."""
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(abi), 0)


def worker_ids(pid: int) -> tuple[int, int] | None:
    """The (uid, gid) a worker of this pid runs as, or None when we cannot change ids (not root)."""
    if os.geteuid() != 0:
        return None
    return ID_BASE + pid, ID_BASE + pid


@functools.cache
def _seccomp() -> ctypes.CDLL | None:
    """libseccomp, loaded once (in the fork server, by :meth:`RuntimeView.prepare`): find_library runs
    ldconfig, and loading a library costs milliseconds a worker should not pay."""
    for name in ("libseccomp.so.2", ctypes.util.find_library("seccomp")):
        try:
            lib = ctypes.CDLL(name, use_errno=True) if name else None
        except OSError:
            continue
        if lib is None:
            continue
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgCmp)]
        lib.seccomp_load.argtypes = lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        return lib
    return None


def missing_layers() -> list[str]:
    """The layers this machine cannot apply, predicted from the parent (``--isolation strict`` refuses them)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("user")
    abi = landlock_abi()
    if abi < 1:
        missing.append("filesystem")
    if abi < 6:
        missing.append("signals")
    if _seccomp() is None:
        missing.append("processes")
        if abi < 4:
            missing.append("network")
    return missing


# --- the read-only view of the runtime ---------------------------------------------------------------------

# Top-level entries of site-packages a worker may not read: the checker and its answer key (installed
# `gradcheckers/models`, an editable install's path hooks), and, in numpy mode, torch and what ships with it.
_HIDDEN = ("gradcheckers", "models", "__editable__")
_TORCH = ("torch", "functorch", "torchgen", "nvidia", "triton")
# System libraries the dynamic loader and Python's extension modules read from. Entry by entry, without the
# python* ones: a system-wide pip install puts packages (this one, its answer key) under
# /usr/local/lib/python3.X, which _library_directories covers with the same filter as any site-packages.
_SYSTEM_TREES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")
_SYSTEM_READ = ("/etc/ld.so.cache", "/usr/share/zoneinfo", "/etc/localtime", "/sys/devices/system/cpu",
                "/dev/urandom", "/dev/random")
_SYSTEM_WRITE = ("/dev/null",)


@dataclass
class RuntimeView:
    """Open O_PATH descriptors of what a worker may read, prepared once in the fork server (opening ~200 paths
    per worker would cost milliseconds; a fork inherits the descriptors for free)."""

    rules: list[tuple[int, int]]  # (fd, wanted rights before masking by the ABI and the file type)
    torch: bool
    # A directory on the way to the runtime that other users may not traverse (pyenv under /root): a worker
    # that changes ids then needs CAP_DAC_READ_SEARCH, kept only while Landlock narrows what it can reach.
    hidden_runtime: str | None = None

    @classmethod
    def prepare(cls, path: Sequence[str], *, torch: bool) -> RuntimeView:
        hidden = _HIDDEN + (() if torch else _TORCH)
        wanted: list[tuple[str, int]] = [(p, _READ) for p in _SYSTEM_READ]
        wanted += [(p, _READ | _FS_WRITE_FILE) for p in _SYSTEM_WRITE]
        for tree in dict.fromkeys(os.path.realpath(t) for t in _SYSTEM_TREES):
            try:
                entries = sorted(os.listdir(tree))
            except OSError:
                continue
            wanted.append((tree, _FS_READ_DIR))
            wanted += [(os.path.join(tree, e), _READ) for e in entries if not e.startswith("python")]
        for directory in _library_directories(path):
            wanted.append((directory, _FS_READ_DIR))  # names only, so imports can list it; contents per entry
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            wanted += [(os.path.join(directory, e), _READ) for e in entries if not e.startswith(hidden)
                       and e not in ("site-packages", "dist-packages")]
        _seccomp()  # loaded here, once, for every worker
        rules = []
        for target, rights in wanted:
            try:
                rules.append((os.open(target, os.O_PATH | os.O_CLOEXEC), rights))
            except OSError:
                continue
        blocked = [d for d in [*_library_directories(path), sys.executable] if not _traversable(d)]
        return cls(rules, torch, blocked[0] if blocked else None)

    def close(self) -> None:
        for fd, _ in self.rules:
            try:
                os.close(fd)
            except OSError:
                pass
        self.rules = []


def _library_directories(path: Sequence[str]) -> list[str]:
    """The standard library and every site-packages on ``path``; not the current directory, not a project."""
    found = []
    for key in ("stdlib", "platstdlib"):
        found.append(sysconfig.get_paths()[key])
    found.append(os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload"))
    found += [p for p in path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")]
    unique: list[str] = []
    for entry in found:
        real = os.path.realpath(entry)
        if os.path.isdir(real) and real not in unique:
            unique.append(real)
    return unique


def _traversable(target: str) -> bool:
    """Whether a user with no relation to any file (neither owner nor group) can reach ``target``."""
    parts = os.path.realpath(target).split(os.sep)
    for depth in range(2, len(parts)):
        try:
            if not os.stat(os.sep.join(parts[:depth])).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


# --- capabilities (linux/capability.h) -------------------------------------------------------------------
_PR_SET_KEEPCAPS = 8
_CAP_VERSION_3 = 0x20080522
_CAP_DAC_READ_SEARCH = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _set_capabilities(mask: int) -> bool:
    """Effective and permitted capabilities become exactly ``mask`` (of the first 32); True on success."""
    data = (_CapData * 2)(_CapData(mask, mask, 0), _CapData(0, 0, 0))
    return _libc.capset(ctypes.byref(_CapHeader(_CAP_VERSION_3, 0)), data) == 0


def drop_capabilities() -> None:
    """Give up every capability (CAP_DAC_READ_SEARCH, if it was kept)."""
    _set_capabilities(0)


# --- the layers ----------------------------------------------------------------------------------------------


def drop_privileges(pid: int, workdir: str, *, keep_search: bool = False) -> str:
    """As root: become an unprivileged user and group of this worker's own, with no supplementary groups.

    The worker's directory is handed to that user first; the parent-death signal, which the kernel clears on
    a change of ids, is set again. With ``keep_search`` the process keeps CAP_DAC_READ_SEARCH (and nothing
    else), for a runtime other users cannot reach; :func:`apply_all` drops it unless Landlock is in force.
    """
    ids = worker_ids(pid)
    if ids is None:
        return f"unchanged: the grader is not root (uid {os.geteuid()})"
    uid, gid = ids
    _hand_over(workdir, uid, gid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    if keep_search:
        _libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setresuid(uid, uid, uid)
    _set_capabilities(1 << _CAP_DAC_READ_SEARCH if keep_search else 0)
    _libc.prctl(_PR_SET_PDEATHSIG, 9)  # SIGKILL, as before the change of ids
    # The same words for every worker (the ids differ per pid): a report must not depend on which pid it got.
    return f"{OWN_IDS}: {ID_BASE:,} + the worker's pid, no supplementary groups"


# Entries of a worker's directory handed to a new worker's user after a restart (a worker replaced after a crash
# or timeout has a new pid, hence a new uid). A submission that made more files than this before crashing
# finds the rest read-only: the bound keeps a restart from costing time in proportion to what it wrote.
_HAND_OVER_LIMIT = 10_000


def _hand_over(workdir: str, uid: int, gid: int) -> None:
    """Make ``workdir`` and what a previous worker left in it belong to ``uid``/``gid`` (links not followed)."""
    os.chown(workdir, uid, gid)
    os.chmod(workdir, 0o700)
    count = 0
    for parent, directories, files in os.walk(workdir):
        for name in directories + files:
            count += 1
            if count > _HAND_OVER_LIMIT:
                return
            try:
                os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)
            except OSError:
                pass


def set_no_new_privs() -> str:
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"unavailable: {os.strerror(ctypes.get_errno())}"
    return "set"


def landlock(view: RuntimeView, workdir: str, extra_write: Sequence[str] = ()) -> dict[str, str]:
    """Restrict the filesystem to ``view`` (read-only) plus ``workdir`` (read-write), TCP to nothing, and
    signals and abstract UNIX sockets to this worker's own domain, as far as this kernel's ABI goes."""
    abi = landlock_abi()
    if abi < 1:
        return {"filesystem": "unavailable: no Landlock in this kernel", "network": "unavailable: no Landlock",
                "signals": "unavailable: no Landlock"}
    fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    attr = _RulesetAttr(fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    # Before ABI 4 (6) the struct was shorter; passing the short size is the documented downgrade.
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                            ctypes.c_uint32(0))
    if ruleset < 0:
        reason = os.strerror(ctypes.get_errno())
        return {"filesystem": f"unavailable: {reason}", "network": f"unavailable: {reason}",
                "signals": f"unavailable: {reason}"}
    opened = []
    try:
        rules = list(view.rules)
        for target in (workdir, *extra_write):
            fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
            opened.append(fd)
            rules.append((fd, fs))
        for fd, rights in rules:
            _add_path_rule(int(ruleset), fd, rights & fs)
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            reason = os.strerror(ctypes.get_errno())
            return {"filesystem": f"unavailable: {reason}", "network": f"unavailable: {reason}",
                    "signals": f"unavailable: {reason}"}
    finally:
        for fd in opened:
            os.close(fd)
        os.close(ruleset)
    return {
        "filesystem": f"landlock abi {abi}: read-only runtime, read-write own directory",
        "network": "landlock: no TCP bind or connect" if abi >= 4 else "unavailable: Landlock ABI < 4",
        "signals": "landlock: scoped to the worker" if abi >= 6 else "unavailable: Landlock ABI < 6",
    }


def _add_path_rule(ruleset: int, fd: int, rights: int) -> None:
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS  # directory rights on a file are EINVAL
    except OSError:
        return
    if not rights:
        return
    rule = _PathBeneathAttr(rights, fd)
    _libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                  ctypes.byref(rule), ctypes.c_uint32(0))


# --- seccomp ---------------------------------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE, _SCMP_CMP_MASKED_EQ = 1, 7
_CLONE_THREAD = 0x00010000


def _errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)  # SCMP_ACT_ERRNO


# Refused outright: running programs, new processes, raw sockets of any family (TCP, UDP, and UNIX sockets
# that could reach a daemon such as Docker's), tracing and reading other processes, namespaces, mounts, the
# kernel's own interfaces, and io_uring (whose operations do not pass through this filter).
_DENIED = (
    "execve", "execveat", "fork", "vfork", "socket", "ptrace", "process_vm_readv", "process_vm_writev",
    "process_madvise", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "kcmp", "tkill", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "bpf", "perf_event_open", "keyctl", "add_key", "request_key",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "init_module",
    "finit_module", "delete_module", "reboot", "swapon", "swapoff", "syslog", "acct", "settimeofday",
    "clock_settime", "sethostname", "setdomainname", "iopl", "ioperm", "personality", "quotactl",
    "open_by_handle_at", "name_to_handle_at", "mknod", "mknodat", "fanotify_init", "move_mount", "open_tree",
    "fsopen", "fsmount", "fspick", "mount_setattr",
)


def seccomp(pid: int) -> str:
    """No new processes (threads allowed), no exec, no sockets, signals only to itself: a libseccomp filter."""
    lib = _seccomp()
    if lib is None:
        return "unavailable: libseccomp is not installed"
    context = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not context:
        return "unavailable: seccomp_init failed"
    try:
        eperm = _errno_action(errno.EPERM)

        def deny(name: str, action: int = eperm, *comparisons: tuple[int, int, int, int]) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                return  # not a system call on this architecture (fork/vfork on arm64)
            array = (_ArgCmp * max(len(comparisons), 1))(*[_ArgCmp(*c) for c in comparisons])
            lib.seccomp_rule_add_array(context, action, number, len(comparisons), array)

        for name in _DENIED:
            deny(name)
        # clone() of a process (no CLONE_THREAD) is refused; of a thread, allowed: torch needs threads.
        deny("clone", eperm, (0, _SCMP_CMP_MASKED_EQ, _CLONE_THREAD, 0))
        # clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes glibc fall back to clone.
        deny("clone3", _errno_action(errno.ENOSYS))
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            deny(name, eperm, (0, _SCMP_CMP_NE, pid, 0))
        if lib.seccomp_load(context) != 0:
            return "unavailable: seccomp_load failed"
    finally:
        lib.seccomp_release(context)
    return "seccomp: no fork, exec or sockets; threads allowed"


def apply_all(view: RuntimeView, workdir: str, *, pid: int, extra_write: Sequence[str] = ()) -> dict[str, str]:
    """Apply every layer, in order, and say what each managed. Must run single-threaded, before any
    submission code. Idempotent layers only: a failure of one never stops the others."""
    keep_search = view.hidden_runtime is not None and landlock_abi() >= 1
    record = {"user": drop_privileges(pid, workdir, keep_search=keep_search)}
    record["no_new_privs"] = set_no_new_privs()
    record.update(landlock(view, workdir, extra_write))
    view.close()
    if keep_search and record["user"].startswith(OWN_IDS):
        if record["filesystem"].startswith("landlock"):
            record["user"] += f"; keeps CAP_DAC_READ_SEARCH to reach {view.hidden_runtime} (Landlock limits it)"
        else:
            drop_capabilities()
    record["processes"] = seccomp(pid)
    if not record["network"].startswith("landlock") and record["processes"].startswith("seccomp"):
        record["network"] = "seccomp: no sockets"
    if not record["signals"].startswith("landlock") and record["user"].startswith(OWN_IDS):
        # An unprivileged user cannot signal another user's processes; seccomp refuses signals to other pids.
        record["signals"] = "own uid: no signal reaches another user's process (no Landlock scoping)"
    return record


def survivors(uid: int) -> int:
    """Kill every process still running as ``uid`` (a worker's own id) and say how many there were."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            os.kill(int(entry), 9)
                            count += 1
                        break
        except (OSError, ValueError):
            continue
    return count


if __name__ == "__main__":  # pragma: no cover - a quick look at what this machine offers
    print({"landlock_abi": landlock_abi(), "missing": missing_layers(), "python": sys.version.split()[0]})
