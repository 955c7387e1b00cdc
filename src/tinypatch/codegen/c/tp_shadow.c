/* tinypatch shadow map (see tp_shadow.h); empty unless built with -DTP_SHADOW. */
#include "tp_shadow.h"

typedef int tp_shadow_unit_not_empty; /* ISO C: a translation unit declares something */

#if defined(TP_SHADOW)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uintptr_t shadow_lo;
static size_t shadow_n;
static int shadow_op;
static unsigned char *shadow_map; /* 1: output byte written during the current in-place call */

void tp_shadow_begin(const void *y, size_t bytes, int op)
{
    shadow_op = op;
    free(shadow_map);
    shadow_map = calloc(bytes ? bytes : 1, 1);
    if (!shadow_map) abort();
    shadow_lo = (uintptr_t)y;
    shadow_n = bytes;
}

void tp_shadow_end(void)
{
    free(shadow_map);
    shadow_map = NULL;
    shadow_n = 0;
}

void tp_shadow_read(const void *p, size_t n)
{
    for (size_t i = 0; shadow_map && i < n; i++) {
        const uintptr_t a = (uintptr_t)p + i;
        if (a >= shadow_lo && a - shadow_lo < shadow_n && shadow_map[a - shadow_lo]) {
            fprintf(stderr, "tp_shadow: in-place kernel read an input byte its output already overwrote "
                            "(op %d, output byte %lu)\n", shadow_op, (unsigned long)(a - shadow_lo));
            abort();
        }
    }
}

void tp_shadow_write(const void *p, size_t n)
{
    for (size_t i = 0; shadow_map && i < n; i++) {
        const uintptr_t a = (uintptr_t)p + i;
        if (a >= shadow_lo && a - shadow_lo < shadow_n) shadow_map[a - shadow_lo] = 1;
    }
}
#endif
