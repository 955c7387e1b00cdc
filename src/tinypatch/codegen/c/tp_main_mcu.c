/* Runs one inference on an emulated (or real, with a debugger) Cortex-M: reads the inputs from
 * the host file input.bin and writes the outputs to output.bin through semihosting, and prints
 * the measured stack high-water mark (the startup code paints the whole stack at reset). */
#include <stdint.h>

#include "model.h"
#include "tp_mcu.h"
#include "tp_semihost.h"

static long stack_used(void)
{
    const volatile uint32_t *p = &__stack_limit__;
    while (p < &__stack_top__ && *p == TP_STACK_PAINT) p++;
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
    if (!transfer("input.bin", 0, MODEL_NUM_INPUTS, model_input, model_input_bytes)) return 2;
    const int rc = model_invoke();
    if (!transfer("output.bin", 1, MODEL_NUM_OUTPUTS, model_output, model_output_bytes)) return 2;
    const long used = stack_used();
    tp_sh_putint("stack_used", used);
    if (__stack_limit__ != TP_STACK_PAINT) {
        tp_sh_puts("tinypatch: stack overflow\n");
        return 4;
    }
    return rc;
}
