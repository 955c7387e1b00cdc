/* tinypatch shadow build support: traps in-place kernels that read a byte they already overwrote. */
#ifndef TP_SHADOW_H
#define TP_SHADOW_H

#include <stddef.h>

/* --- shadow build (-DTP_SHADOW, host: reference and DSP kernels): between TP_SHADOW_BEGIN(y, bytes, op)
 * and TP_SHADOW_END() (around every in-place call) the kernels record each output byte they
 * write (TP_WR) and abort on a read (TP_RD) of an input byte already overwritten. ------------ */
#if defined(TP_SHADOW)
void tp_shadow_begin(const void *y, size_t bytes, int op);
void tp_shadow_end(void);
void tp_shadow_read(const void *p, size_t n);
void tp_shadow_write(const void *p, size_t n);
#define TP_SHADOW_BEGIN(y, bytes, op) tp_shadow_begin((y), (bytes), (op))
#define TP_SHADOW_END() tp_shadow_end()
#define TP_RD(v) (tp_shadow_read(&(v), sizeof(v)), (v))
#define TP_WR(dst, v) ((dst) = (v), tp_shadow_write(&(dst), sizeof(dst)))
#else
#define TP_SHADOW_BEGIN(y, bytes, op) ((void)0)
#define TP_SHADOW_END() ((void)0)
#define TP_RD(v) (v)
#define TP_WR(dst, v) ((dst) = (v))
#endif

#endif
