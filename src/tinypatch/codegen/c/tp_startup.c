/* Minimal Cortex-M startup: vector table, .data/.bss initialisation, FPU/MVE enable, main(),
 * exit code through semihosting. Faults end the run with exit code 3. */
#include <stdint.h>

#include "tp_semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
int main(void);
void Reset_Handler(void);

static void fault(void)
{
    tp_sh_puts("tinypatch: processor fault\n");
    tp_sh_exit(3);
}

typedef void (*vector_t)(void);
__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)&__stack_top__, Reset_Handler, fault, fault, fault, fault, fault, 0, 0, 0, 0,
    fault, fault, 0, fault, fault,
};

__attribute__((noinline)) static void init_memory(void)
{
    volatile uint32_t *src = &__data_load__, *dst = &__data_start__;
    while (dst < &__data_end__) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
}

void Reset_Handler(void)
{
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10/CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    init_memory();
    tp_sh_exit(main());
}
