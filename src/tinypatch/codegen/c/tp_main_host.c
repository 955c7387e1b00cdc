/* Runs one inference on the host: model_host INPUT.bin OUTPUT.bin (raw bytes of every input,
 * then of every output, in model order). */
#include <stdio.h>

#include "model.h"

static int transfer(const char *name, int write, int count, void *(*buffer)(int), size_t (*bytes)(int))
{
    FILE *f = fopen(name, write ? "wb" : "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", name);
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < count && ok; i++) {
        const size_t n = bytes(i);
        ok = (write ? fwrite(buffer(i), 1, n, f) : fread(buffer(i), 1, n, f)) == n;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "short %s on %s\n", write ? "write" : "read", name);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUT.bin OUTPUT.bin\n", argv[0]);
        return 2;
    }
    if (!transfer(argv[1], 0, MODEL_NUM_INPUTS, model_input, model_input_bytes)) return 2;
    const int rc = model_invoke();
    if (!transfer(argv[2], 1, MODEL_NUM_OUTPUTS, model_output, model_output_bytes)) return 2;
    return rc;
}
