/* test_model.c — ctest: the model API's argument checks (NULL pointers, bad params, missing and non-GGUF files)
 * return their status codes without aborting; the forward itself is tested against PyTorch in
 * tests/runtime/test_model.py, which builds real models. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include "pbs2p.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK_ST(st, want, what) do { pbs2p_status s_ = (st); if (s_ != (want)) { failures++; \
    fprintf(stderr, "FAIL %s:%d: %s: status %d, want %d; %s\n", __FILE__, __LINE__, (what), (int)s_, (int)(want), \
            pbs2p_last_error()); } } while (0)

int main(void) {
    pbs2p_model *m = (pbs2p_model *)&failures; /* must be reset to NULL by a failed load */
    pbs2p_model_info info;
    int32_t tok = 0;
    float logits[4];
    CHECK_ST(pbs2p_model_load("x.gguf", NULL, NULL), PBS2P_ERR_NULL, "out NULL");
    CHECK_ST(pbs2p_model_load(NULL, NULL, &m), PBS2P_ERR_NULL, "path NULL");
    if (m) { failures++; fprintf(stderr, "FAIL: *out not NULL after a failed load\n"); }
    CHECK_ST(pbs2p_model_load("/nonexistent/dir/model.gguf", NULL, &m), PBS2P_ERR_IO, "missing file");
    pbs2p_model_params bad_threads = {-1, 0}, bad_ctx = {1, -5};
    CHECK_ST(pbs2p_model_load("/nonexistent/dir/model.gguf", &bad_threads, &m), PBS2P_ERR_ARGUMENT, "n_threads -1");
    CHECK_ST(pbs2p_model_load("/nonexistent/dir/model.gguf", &bad_ctx, &m), PBS2P_ERR_ARGUMENT, "n_ctx -5");

    char path[] = "/tmp/pbs2p_test_model_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 2; }
    const char text[] = "this is not a GGUF file at all, just text";
    if (write(fd, text, sizeof text) != (ssize_t)sizeof text) { perror("write"); return 2; }
    close(fd);
    CHECK_ST(pbs2p_model_load(path, NULL, &m), PBS2P_ERR_GGUF, "not a GGUF file");
    /* pbs2p_model_peek makes the load's first checks, with the same statuses */
    CHECK_ST(pbs2p_model_peek(path, NULL, &info), PBS2P_ERR_GGUF, "peek: not a GGUF file");
    CHECK_ST(pbs2p_model_peek(path, NULL, NULL), PBS2P_ERR_NULL, "peek: out NULL");
    CHECK_ST(pbs2p_model_peek(NULL, NULL, &info), PBS2P_ERR_NULL, "peek: path NULL");
    CHECK_ST(pbs2p_model_peek("/nonexistent/dir/model.gguf", NULL, &info), PBS2P_ERR_IO, "peek: missing file");
    CHECK_ST(pbs2p_model_peek("/nonexistent/dir/model.gguf", &bad_ctx, &info), PBS2P_ERR_ARGUMENT, "peek: n_ctx -5");
    unlink(path);

    CHECK_ST(pbs2p_model_eval(NULL, &tok, 1, 0, logits, 4), PBS2P_ERR_NULL, "eval NULL model");
    CHECK_ST(pbs2p_model_get_info(NULL, &info), PBS2P_ERR_NULL, "info NULL model");
    CHECK_ST(pbs2p_model_reset(NULL), PBS2P_ERR_NULL, "reset NULL model");
    CHECK_ST(pbs2p_prompt_fits(NULL, 1), PBS2P_ERR_NULL, "prompt_fits NULL info");
    info.n_ctx = 8;
    CHECK_ST(pbs2p_prompt_fits(&info, 7), PBS2P_OK, "7 prompt tokens in n_ctx 8");
    CHECK_ST(pbs2p_prompt_fits(&info, 8), PBS2P_ERR_ARGUMENT, "8 prompt tokens in n_ctx 8");
    pbs2p_model_free(NULL);
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("test_model: ok\n");
    return failures ? 1 : 0;
}
