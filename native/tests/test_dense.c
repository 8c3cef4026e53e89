/* test_dense.c — ctest: every compiled variant's F16 / Q8_0 row dots (the model's head) against exact decoding and a
 * double-precision reference; one-hot activations read back each decoded weight bit for bit; batch invariance. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rnd_unit(void) { return (float)rnd() / 2147483648.0f - 1.0f; }

/* Random bytes of a (rows, cols) matrix of `type`: F16 of any finite value incl. subnormals and zeros of both
 * signs, or Q8_0 blocks with a random (finite, non-negative or negative) scale and int8 values incl. -128. */
static uint8_t *make_matrix(int32_t type, int32_t rows, int32_t cols, size_t *row_bytes) {
    *row_bytes = type == PBS2P_GGML_F16 ? (size_t)cols * 2 : (size_t)cols / PBS2P_Q8_0_BLOCK * PBS2P_Q8_0_BYTES;
    uint8_t *p = malloc(*row_bytes * (size_t)rows + 1);
    for (size_t i = 0; i < *row_bytes * (size_t)rows; i++) p[i] = (uint8_t)rnd();
    if (type == PBS2P_GGML_F16) {
        for (size_t i = 0; i < (size_t)rows * cols; i++) /* exponent 31 (inf/nan) -> a finite exponent */
            if (((p[2 * i + 1] >> 2) & 0x1F) == 0x1F) p[2 * i + 1] &= (uint8_t)~0x40;
    } else {
        for (size_t b = 0; b < (size_t)rows * cols / PBS2P_Q8_0_BLOCK; b++) {
            uint8_t *d = p + b * PBS2P_Q8_0_BYTES; /* scale exponent in 2^-10 .. 2^-3 */
            uint16_t h = (uint16_t)(((5 + rnd() % 8) << 10) | (rnd() & 0x3FF) | ((rnd() & 1) << 15));
            d[0] = (uint8_t)h; d[1] = (uint8_t)(h >> 8);
        }
    }
    return p;
}

static void check_variant(const char *name, int32_t type, int32_t rows, int32_t cols, size_t T) {
    size_t rb;
    uint8_t *data = make_matrix(type, rows, cols, &rb);
    pbs2p_dense W = {data, type, rb, rows, cols};
    pbs2p_kernels k;
    CHECK(pbs2p_kernel_select(name) == PBS2P_OK && pbs2p_kernel_current(&k), "select %s", name);
    float *X = malloc(sizeof(float) * T * cols), *Y = malloc(sizeof(float) * T * rows);
    float *Y1 = malloc(sizeof(float) * rows), *row = malloc(sizeof(float) * cols), *scratch = malloc(sizeof(float) * cols);
    for (size_t i = 0; i < T * (size_t)cols; i++) X[i] = rnd_unit();
    k.dense(&W, X, T, cols, Y, rows, 0, rows, scratch);
    double worst = 0;
    for (int32_t r = 0; r < rows; r++) {
        pbs2p_dense_row(&W, r, row);
        for (size_t t = 0; t < T; t++) {
            double exact = 0, mag = 0;
            for (int32_t j = 0; j < cols; j++) {
                exact += (double)X[t * cols + j] * row[j];
                mag += fabs((double)X[t * cols + j] * row[j]);
            }
            double err = fabs(Y[t * rows + r] - exact) / (mag + 1e-30);
            if (err > worst) worst = err;
        }
    }
    /* float32 sums of `cols` products: error <= cols * 2^-24 relative to sum |x w| (a loose bound, never reached) */
    CHECK(worst <= cols * 0x1p-24, "%s type %d %dx%d T=%zu: relative error %g", name, type, rows, cols, T, worst);
    for (size_t t = 0; t < T; t++) { /* one token alone == the same token in the batch, bit for bit */
        k.dense(&W, X + t * cols, 1, cols, Y1, rows, 0, rows, scratch);
        CHECK(memcmp(Y1, Y + t * rows, sizeof(float) * rows) == 0, "%s type %d %dx%d: token %zu differs alone",
              name, type, rows, cols, t);
    }
    /* one-hot activations read each decoded weight back exactly: the variant decodes as pbs2p_dense_row does */
    memset(X, 0, sizeof(float) * cols);
    for (int32_t j = 0; j < cols; j += 1 + cols / 9) {
        X[j] = 1.0f;
        k.dense(&W, X, 1, cols, Y1, rows, 0, rows, scratch);
        for (int32_t r = 0; r < rows; r++) {
            pbs2p_dense_row(&W, r, row);
            CHECK(memcmp(&Y1[r], &row[j], 4) == 0 || (Y1[r] == 0 && row[j] == 0), "%s type %d: w[%d,%d] %g != %g",
                  name, type, r, j, Y1[r], row[j]);
        }
        X[j] = 0.0f;
    }
    free(data); free(X); free(Y); free(Y1); free(row); free(scratch);
}

int main(void) {
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    static const int32_t f16_cols[] = {1, 7, 15, 16, 33, 576, 1000};
    static const int32_t q8_cols[] = {32, 64, 96, 576, 1024};
    for (size_t v = 0; v < nv; v++) {
        if (!pbs2p_kernel_available(names[v])) continue;
        for (size_t c = 0; c < sizeof f16_cols / sizeof f16_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_F16, 1 + (int32_t)(c * 7) % 40, f16_cols[c], 1 + c % 3);
        for (size_t c = 0; c < sizeof q8_cols / sizeof q8_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_Q8_0, 3 + (int32_t)(c * 5) % 30, q8_cols[c], 1 + c % 3);
        printf("dense rows %s: ok\n", names[v]);
    }
    pbs2p_kernel_select(NULL);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all dense checks passed\n");
    return 0;
}
