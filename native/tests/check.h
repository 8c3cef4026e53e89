/* check.h — what every ctest program shares: the failure count and CHECK(cond, fmt, ...), which reports a failed
 * condition with its file and line and carries on; and, in a file that defines TEST_RNG_SEED before including it,
 * deterministic random numbers (xorshift64: rnd() in [0, 2^32), rnd_unit() in [-1, 1)). */
#ifndef PBS2P_TESTS_CHECK_H
#define PBS2P_TESTS_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#ifdef TEST_RNG_SEED
static uint64_t rng_state = TEST_RNG_SEED;
static inline uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static inline float rnd_unit(void) { return (float)rnd() / 2147483648.0f - 1.0f; }
#endif

#endif
