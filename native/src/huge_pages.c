/* huge_pages.c — zeroed memory for the large arrays a decode step streams through (a layer's prepared planes, the KV
 * cache). From 2 MiB on: an anonymous mapping aligned to 2 MiB and advised as transparent huge pages (Linux's are in
 * "madvise" mode by default), zero until written and resident only once touched; with 4 KiB pages the planes met a
 * TLB miss every 64th cache line, and a 7B model's KV cache (rows 8 KiB apart per position) one per value row: its
 * decode attention over 150 positions from memory took 324-374 us a layer against 257-260 us on huge pages (one
 * thread, float16). Anything smaller, or elsewhere than Linux: calloc. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise, MADV_HUGEPAGE */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define HUGE_PAGE ((size_t)2 << 20)

/* The mapping's length: whole pages of the base size, not of 2 MiB. Huge pages back the 2 MiB-aligned whole ones; the
 * tail past the last is small pages, so an array is resident to the page it ends on: rounded to 2 MiB, every array a
 * little over a multiple of it held most of a huge page for nothing (a Llama-2-7B-shape MLP layer's 10.8 MiB of planes
 * took 12, 120 MiB over the model). */
static size_t huge_rounded(size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}
#endif

void *pbs2p_huge_alloc(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= HUGE_PAGE) {
        const size_t rounded = huge_rounded(bytes), total = rounded + HUGE_PAGE;
        char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
        if (a > p) munmap(p, (size_t)(a - p)); /* keep the 2 MiB-aligned `rounded` bytes only */
        if (a + rounded < p + total) munmap(a + rounded, (size_t)(p + total - (a + rounded)));
        madvise(a, rounded, MADV_HUGEPAGE); /* advice only: without it the pages are small, nothing else changes */
        return a;
    }
#endif
    return calloc(bytes ? bytes : 1, 1);
}

void pbs2p_huge_free(void *p, size_t bytes) {
    if (!p) return;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= HUGE_PAGE) {
        munmap(p, huge_rounded(bytes));
        return;
    }
#endif
    free(p);
}
