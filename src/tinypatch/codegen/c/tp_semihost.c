/* Arm semihosting calls (see tp_semihost.h). */
#include "tp_semihost.h"

#include <stdint.h>

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE0 = 0x04, SYS_WRITE = 0x05, SYS_READ = 0x06,
       SYS_EXIT = 0x18, SYS_EXIT_EXTENDED = 0x20 };
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int call(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static size_t length(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

int tp_sh_open(const char *name, int write)
{
    uintptr_t args[3] = {(uintptr_t)name, write ? 5u : 1u, length(name)}; /* "wb" : "rb" */
    return call(SYS_OPEN, args);
}

int tp_sh_read(int handle, void *buf, size_t n)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, n};
    return (int)n - call(SYS_READ, args); /* the call returns the bytes NOT read */
}

int tp_sh_write(int handle, const void *buf, size_t n)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, n};
    return (int)n - call(SYS_WRITE, args);
}

void tp_sh_close(int handle)
{
    uintptr_t args[1] = {(uintptr_t)handle};
    call(SYS_CLOSE, args);
}

void tp_sh_puts(const char *s)
{
    call(SYS_WRITE0, (void *)s);
}

void tp_sh_putint(const char *label, long value)
{
    char buf[24];
    int i = (int)sizeof buf - 1;
    unsigned long v = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;
    buf[i--] = 0;
    buf[i--] = '\n';
    do {
        buf[i--] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0) buf[i--] = '-';
    buf[i] = ' ';
    tp_sh_puts(label);
    tp_sh_puts(buf + i);
}

void tp_sh_exit(int code)
{
    uintptr_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)code};
    call(SYS_EXIT_EXTENDED, args);
    for (;;) call(SYS_EXIT, (void *)ADP_STOPPED_APPLICATION_EXIT); /* hosts without the extension */
}
