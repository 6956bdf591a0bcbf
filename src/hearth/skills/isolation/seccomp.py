"""The seccomp filter of a worker without ``network``: it cannot make a Unix-domain socket.

A network namespace of its own cuts a worker off from every IP address and from abstract Unix
sockets, but not from the Unix sockets that have a path in the filesystem: PostgreSQL's
``/run/postgresql/.s.PGSQL.5432``, ``/var/run/docker.sock``, a Redis socket in ``/tmp``, a socket in
hearth's data directory. Those can be anywhere, so hiding directories (a mount namespace with empty
``/run`` and ``/tmp``) would only hide the usual places; this filter closes them all, wherever they are:

* ``socket(AF_UNIX, ...)`` fails with ``EPERM`` (``PermissionError`` in Python);
* ``socketpair`` works for ``SOCK_STREAM`` only, whose two ends are connected to each other and cannot
  be connected or sent anywhere else (asyncio makes one for its event loop); a datagram pair could send
  to any path, so it fails with ``EPERM``;
* io_uring, which can make and connect sockets without these system calls, fails with ``EPERM``;
* a system call of another ABI (i386 or x32 on x86-64, 32-bit ARM on arm64) kills the process.

The price: a skill without ``network`` cannot use what needs a Unix socket of its own, such as
``multiprocessing``'s managers or its ``forkserver`` start method (``fork``, the default before Python
3.14, and ``spawn`` work). Programs it starts inherit the filter.

The filter is built for the processor hearth runs on (x86-64 or arm64) before the fork;
``install`` runs in the child. Where there is no filter for the processor, or the kernel refuses it,
the child fails before exec and the skill does not start.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import socket
import struct
from collections.abc import Callable

__all__ = ["Filter", "unix_socket_filter"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

_RET_ALLOW = 0x7FFF0000
_RET_DENY = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO
_RET_KILL = 0x80000000  # SECCOMP_RET_KILL_PROCESS

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6] (little-endian: low word first)
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24

# (AUDIT_ARCH_*, socket, socketpair, io_uring_setup, io_uring_enter, io_uring_register, first number of x32)
_ABIS = {
    "x86_64": (0xC000003E, 41, 53, 425, 426, 427, 0x40000000),
    "aarch64": (0xC00000B7, 198, 199, 425, 426, 427, None),
}
_ABIS["amd64"] = _ABIS["x86_64"]
_ABIS["arm64"] = _ABIS["aarch64"]

# BPF opcodes
_LOAD = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

Step = tuple[int, int, str | None, str | None] | str  # (opcode, k, label if true, label if false) or a label


def _program(machine: str) -> list[Step] | None:
    abi = _ABIS.get(machine)
    if abi is None or struct.calcsize("P") != 8:  # a 32-bit hearth on a 64-bit kernel has the other ABI
        return None
    arch, sys_socket, sys_socketpair, *io_uring, x32 = abi
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    steps: list[Step] = [
        (_LOAD, _ARCH, None, None),
        (_JEQ, arch, "native", "kill"),
        "native",
        (_LOAD, _NR, None, None),
    ]
    if x32 is not None:
        steps.append((_JGE, x32, "kill", None))
    steps += [
        (_JEQ, sys_socket, "socket", None),
        (_JEQ, sys_socketpair, "socketpair", None),
        *((_JEQ, number, "deny", None) for number in io_uring),
        (_RET, _RET_ALLOW, None, None),
        "socket",
        (_LOAD, _ARG0, None, None),  # the domain
        (_JEQ, socket.AF_UNIX, "deny", "allow"),
        "socketpair",
        (_LOAD, _ARG1, None, None),  # the type, with its flags
        (_AND, ~flags & 0xFFFFFFFF, None, None),
        (_JEQ, socket.SOCK_STREAM, "allow", "deny"),
        "allow", (_RET, _RET_ALLOW, None, None),
        "deny", (_RET, _RET_DENY, None, None),
        "kill", (_RET, _RET_KILL, None, None),
    ]
    return steps


def _assemble(steps: list[Step]) -> bytes:
    """``struct sock_filter`` instructions; a label names the instruction after it, jumps are forward only."""
    where: dict[str, int] = {}
    instructions: list[tuple[int, int, str | None, str | None]] = []
    for step in steps:
        if isinstance(step, str):
            where[step] = len(instructions)
        else:
            instructions.append(step)

    def offset(label: str | None, at: int) -> int:
        return 0 if label is None else where[label] - at - 1

    return b"".join(struct.pack("=HBBI", code, offset(true, at), offset(false, at), k & 0xFFFFFFFF)
                    for at, (code, k, true, false) in enumerate(instructions))


class _Program(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


Filter = Callable[[], None]


def unix_socket_filter(prctl: Callable[..., int] | None, machine: str | None = None) -> Filter:
    """What the child calls to install the filter (``prctl`` is libc's, looked up before the fork).

    That call raises ``OSError`` when the filter cannot be installed: no ``prctl``, a processor without a
    filter here, or a kernel that refuses it (no ``CONFIG_SECCOMP_FILTER``).
    """
    machine = machine or platform.machine()
    steps = _program(machine)
    if prctl is None or steps is None:
        why = "prctl() is not available" if prctl is None else f"no seccomp filter for {machine}"

        def unavailable() -> None:
            raise OSError(errno.ENOSYS, why)

        return unavailable
    code = _assemble(steps)
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _Program(len(code) // 8, ctypes.addressof(buffer))
    pointer = ctypes.byref(program)

    def install() -> None:
        _ = buffer  # kept alive as long as the program that points into it
        # No new privileges: the condition for an unprivileged filter, and no setuid program escapes it.
        if prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
        if prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, pointer, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "the kernel refused the seccomp filter")

    return install
