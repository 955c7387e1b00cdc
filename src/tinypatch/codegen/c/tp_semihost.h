/* Arm semihosting (bkpt 0xAB): host file I/O, console output and exit code on a debugger or
 * an emulator such as QEMU (-semihosting-config enable=on,target=native). */
#ifndef TP_SEMIHOST_H
#define TP_SEMIHOST_H

#include <stddef.h>

int tp_sh_open(const char *name, int write);           /* handle, or -1 */
int tp_sh_read(int handle, void *buf, size_t n);        /* bytes read */
int tp_sh_write(int handle, const void *buf, size_t n); /* bytes written */
void tp_sh_close(int handle);
void tp_sh_puts(const char *s);                         /* to the host console */
void tp_sh_putint(const char *label, long value);       /* "label value\n" */
void tp_sh_exit(int code) __attribute__((noreturn));

#endif
