/* fuzz_gguf.c — the fuzz target over untrusted GGUF bytes: open from memory, walk every key-value and tensor,
 * describe and prepare every pbs2p linear (one gemv each), and load + run the model from an in-memory file.
 *
 * Linked either with libFuzzer (clang -fsanitize=fuzzer, PBS2P_FUZZ=ON) or with replay.c's plain main()
 * (any compiler, PBS2P_BUILD_TESTS), which feeds it the seed corpus and the regression files. The target
 * never judges a status: any status is fine, only a crash, a sanitizer report or a leak is a bug. */
#define _GNU_SOURCE /* memfd_create */
#include "pbs2p.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_GEMV_ELEMS ((uint64_t)1 << 22) /* rows * cols: skip the gemv above this (a fuzzed 64k x 64k layer) */
#define MAX_VOCAB_EVAL (1 << 20)           /* logits floats allocated for the one-token eval */

/* Read every key-value and tensor through the public getters (pointers must lie inside the input). */
static void walk(const pbs2p_gguf *f, const uint8_t *data, size_t size) {
    pbs2p_gguf_info info;
    if (pbs2p_gguf_get_info(f, &info) != PBS2P_OK) return;
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < info.n_kv; i++) {
        pbs2p_gguf_kv kv;
        if (pbs2p_gguf_kv_at(f, i, &kv) != PBS2P_OK) continue;
        pbs2p_gguf_kv again;
        (void)pbs2p_gguf_find_key(f, kv.key, &again);
        if (kv.type == PBS2P_GGUF_STRING && kv.count) sink ^= ((const uint8_t *)kv.data)[kv.count - 1];
        if (kv.type == PBS2P_GGUF_ARRAY && kv.elem_type == PBS2P_GGUF_STRING) {
            uint64_t n = kv.count < 64 ? kv.count : 64; /* first and last strings are the interesting ones */
            for (uint64_t j = 0; j < n; j++) {
                const char *s; size_t len;
                if (pbs2p_gguf_get_arr_str(f, kv.key, j == n - 1 ? kv.count - 1 : j, &s, &len) == PBS2P_OK && len)
                    sink ^= (uint8_t)s[len - 1];
            }
        }
    }
    for (uint64_t i = 0; i < info.n_tensors; i++) {
        pbs2p_gguf_tensor t;
        if (pbs2p_gguf_tensor_at(f, i, &t) != PBS2P_OK) continue;
        pbs2p_gguf_tensor again;
        (void)pbs2p_gguf_find_tensor(f, t.name, &again);
        /* the data range must lie inside the input: touch its first and last byte */
        if (t.n_bytes) {
            const uint8_t *p = t.data;
            if (p < data || p + t.n_bytes > data + size) abort();
            sink ^= p[0] ^ p[t.n_bytes - 1];
        }
    }
    (void)sink;
}

/* Describe, prepare and run (one gemv) every linear named in pbs2p.linear.names. */
static void linears(const pbs2p_gguf *f) {
    uint64_t n = 0;
    (void)pbs2p_gguf_check_linears(f, &n);
    pbs2p_gguf_kv names;
    if (pbs2p_gguf_find_key(f, "pbs2p.linear.names", &names) != PBS2P_OK || names.type != PBS2P_GGUF_ARRAY ||
        names.elem_type != PBS2P_GGUF_STRING)
        return;
    for (uint64_t i = 0; i < names.count && i < 256; i++) {
        const char *s; size_t len;
        if (pbs2p_gguf_get_arr_str(f, "pbs2p.linear.names", i, &s, &len) != PBS2P_OK || len >= 512) continue;
        char base[512];
        memcpy(base, s, len);
        base[len] = '\0';
        pbs2p_layer_desc d;
        if (pbs2p_gguf_layer_desc(f, base, &d) != PBS2P_OK) continue;
        pbs2p_layer *layer = NULL;
        if (pbs2p_layer_prepare(&d, &layer) != PBS2P_OK) continue;
        if ((uint64_t)d.rows * (uint64_t)d.cols <= MAX_GEMV_ELEMS) {
            float *x = calloc((size_t)d.cols, sizeof *x), *y = calloc((size_t)d.rows, sizeof *y);
            if (x && y) {
                for (int32_t k = 0; k < d.cols; k++) x[k] = (float)(k % 7) - 3.0f;
                (void)pbs2p_gemv(layer, x, (size_t)d.cols, y, (size_t)d.rows, 1);
            }
            free(x);
            free(y);
        }
        pbs2p_layer_free(layer);
    }
}

/* pbs2p_model_load takes a path: hand it the bytes as an anonymous in-memory file (/proc/self/fd/N). */
static void model(const uint8_t *data, size_t size) {
    int fd = memfd_create("pbs2p_fuzz", 0);
    if (fd < 0) return;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) { close(fd); return; }
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    pbs2p_model_params params = {1, 2}; /* two positions: a prompt token and one more */
    pbs2p_model *m = NULL;
    if (pbs2p_model_load(path, &params, &m) == PBS2P_OK) {
        pbs2p_model_info info;
        if (pbs2p_model_get_info(m, &info) == PBS2P_OK && info.n_vocab >= 1 && info.n_vocab <= MAX_VOCAB_EVAL) {
            float *logits = malloc((size_t)info.n_vocab * 2 * sizeof *logits);
            int32_t tokens[2] = {0, info.n_vocab - 1};
            if (logits) {
                (void)pbs2p_model_eval(m, tokens, 2, 0, logits, (size_t)info.n_vocab * 2);
                (void)pbs2p_model_eval(m, tokens + 1, 1, 1, logits, (size_t)info.n_vocab);
            }
            free(logits);
        }
        pbs2p_model_free(m);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pbs2p_gguf *f = NULL;
    if (pbs2p_gguf_open_memory(data, size, &f) != PBS2P_OK) return 0;
    walk(f, data, size);
    linears(f);
    /* the model needs at least one valid linear file; skip the file write for everything else */
    int is_model = pbs2p_gguf_check_linears(f, NULL) == PBS2P_OK;
    pbs2p_gguf_close(f);
    if (is_model) model(data, size);
    return 0;
}
