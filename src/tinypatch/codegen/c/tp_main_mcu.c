/* Runs one inference on an emulated (or real, with a debugger) Cortex-M: reads the inputs from
 * the host file input.bin and writes the outputs to output.bin through semihosting, and prints
 * the measured stack high-water mark (the stack is painted before the run). */
#include <stdint.h>

#include "model.h"
#include "tp_semihost.h"

#define PAINT 0xA5A5A5A5u
extern uint32_t __stack_limit__, __stack_top__;

__attribute__((noinline)) static void paint_stack(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = &__stack_limit__; p < sp; p++) *p = PAINT;
}

static long stack_used(void)
{
    const uint32_t *p = &__stack_limit__;
    while (p < &__stack_top__ && *p == PAINT) p++;
    return (long)((const char *)&__stack_top__ - (const char *)p);
}

static int transfer(const char *name, int write, int count, void *(*buffer)(int), size_t (*bytes)(int))
{
    const int fd = tp_sh_open(name, write);
    if (fd < 0) {
        tp_sh_puts("tinypatch: cannot open ");
        tp_sh_puts(name);
        tp_sh_puts("\n");
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < count && ok; i++) {
        const size_t n = bytes(i);
        ok = (size_t)(write ? tp_sh_write(fd, buffer(i), n) : tp_sh_read(fd, buffer(i), n)) == n;
    }
    tp_sh_close(fd);
    if (!ok) tp_sh_puts("tinypatch: short transfer\n");
    return ok;
}

int main(void)
{
    paint_stack();
    if (!transfer("input.bin", 0, MODEL_NUM_INPUTS, model_input, model_input_bytes)) return 2;
    const int rc = model_invoke();
    if (!transfer("output.bin", 1, MODEL_NUM_OUTPUTS, model_output, model_output_bytes)) return 2;
    const long used = stack_used();
    tp_sh_putint("stack_used", used);
    if (__stack_limit__ != PAINT) {
        tp_sh_puts("tinypatch: stack overflow\n");
        return 4;
    }
    return rc;
}
