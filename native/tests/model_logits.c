/* model_logits.c — writes a model's logits for a fixed token list as raw float32, so two builds (x86 and AArch64
 * under qemu, scripts/test-aarch64.sh) can be compared on the same GGUF.
 *
 * Usage: model_logits MODEL.gguf OUT.f32 TOKEN...; OUT gets n_tokens x n_vocab little-endian float32 (the logits
 * of every position, one eval of the whole list, one thread). Exit 0, or 1 with the library's message. */
#include "pbs2p.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.f32 TOKEN...\n", argv[0]);
        return 2;
    }
    int32_t n = argc - 3;
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    if (!tokens) return 1;
    for (int32_t i = 0; i < n; i++) tokens[i] = (int32_t)strtol(argv[3 + i], NULL, 10);
    pbs2p_model_params params = {1, n};
    pbs2p_model *m = NULL;
    pbs2p_model_info info;
    float *logits = NULL;
    int rc = 1;
    if (pbs2p_model_load(argv[1], &params, &m) != PBS2P_OK || pbs2p_model_get_info(m, &info) != PBS2P_OK) goto done;
    size_t len = (size_t)n * (size_t)info.n_vocab; /* logits: (n_tokens, n_vocab) */
    if (!(logits = malloc(len * sizeof *logits))) goto done;
    if (pbs2p_model_eval(m, tokens, n, 0, logits, len) != PBS2P_OK) goto done;
    FILE *fp = fopen(argv[2], "wb");
    if (!fp) { perror(argv[2]); goto done; }
    rc = fwrite(logits, sizeof *logits, len, fp) == len ? 0 : 1;
    if (fclose(fp) != 0) rc = 1;
    printf("%s: %d tokens x %d vocab (%s)\n", argv[2], n, info.n_vocab, info.arch);
done:
    if (rc) fprintf(stderr, "model_logits: %s\n", pbs2p_last_error());
    pbs2p_model_free(m);
    free(logits);
    free(tokens);
    return rc;
}
