/* test_gguf.c — ctest: the GGUF reader and pbs2p_gguf_layer_desc against GGUF files built byte by byte here.
 *
 * A small GGUF writer (below) builds a valid file holding every value type and four tensor types, recording
 * where each field lies, so a test can patch one field and check the exact status. Checks: the valid file reads
 * back exactly; every prefix of it is PBS2P_ERR_TRUNCATED until its last tensor ends and valid after; each
 * malformed field (magic, version, counts, string and array lengths, value types, names, n_dims, dims,
 * tensor types, alignment, offsets, overlaps, duplicates) gives its status; typed getters refuse other types;
 * random byte corruption never reads out of bounds (run under -fsanitize=address,undefined); a pbs2p file
 * gives the same descriptor as its arrays, and each inconsistency between keys and tensors is refused. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, mkdtemp */
#include "pbs2p.h"
#include "check.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* status `st` must be `want`; prints the library's message otherwise */
#define CHECK_ST(st, want, what) do { pbs2p_status s_ = (st); CHECK(s_ == (want), "%s: status %d (%s), want %d; %s", \
    (what), (int)s_, pbs2p_status_str(s_), (int)(want), pbs2p_last_error()); } while (0)

/* ---- a byte buffer and a GGUF writer that remembers where fields are ---- */

typedef struct buf { uint8_t *p; size_t len, cap; } buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) { fprintf(stderr, "out of memory\n"); exit(2); }
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}
static void put_u32(buf *b, uint32_t v) { uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}; put(b, x, 4); }
static void put_u64(buf *b, uint64_t v) { put_u32(b, (uint32_t)v); put_u32(b, (uint32_t)(v >> 32)); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void set_u32(buf *b, size_t at, uint32_t v) { for (int k = 0; k < 4; k++) b->p[at + k] = (uint8_t)(v >> 8 * k); }
static void set_u64(buf *b, size_t at, uint64_t v) { for (int k = 0; k < 8; k++) b->p[at + k] = (uint8_t)(v >> 8 * k); }

#define MAX_T 24
typedef struct tspec { const char *name; uint32_t type, n_dims; uint64_t ne[4]; const void *data; size_t nbytes; } tspec;

typedef struct writer {
    buf kv;              /* the key-value section */
    uint64_t n_kv;
    tspec t[MAX_T];
    int n_t;
    uint32_t alignment;
} writer;

/* Positions (in the finished file) of fields tests patch. */
typedef struct marks {
    size_t version, n_tensors, n_kv;
    size_t t_ndims[MAX_T], t_ne[MAX_T], t_type[MAX_T], t_offset[MAX_T];
    uint64_t t_rel[MAX_T]; /* data offset of each tensor from the data section */
    size_t data_start, data_end;
} marks;

#define HEADER_BYTES 24
/* Each kv helper returns the file position of the value type field (after the key). */
static size_t kv_key(writer *w, const char *key) { put_str(&w->kv, key); w->n_kv++; return HEADER_BYTES + w->kv.len; }
static size_t kv_u32(writer *w, const char *key, uint32_t v) { size_t at = kv_key(w, key); put_u32(&w->kv, PBS2P_GGUF_UINT32); put_u32(&w->kv, v); return at; }
static size_t kv_str(writer *w, const char *key, const char *s) { size_t at = kv_key(w, key); put_u32(&w->kv, PBS2P_GGUF_STRING); put_str(&w->kv, s); return at; }
static size_t kv_raw(writer *w, const char *key, uint32_t type, const void *v, size_t n) {
    size_t at = kv_key(w, key); put_u32(&w->kv, type); put(&w->kv, v, n); return at;
}
static size_t kv_arr_u32(writer *w, const char *key, const uint32_t *v, uint64_t n) {
    size_t at = kv_key(w, key);
    put_u32(&w->kv, PBS2P_GGUF_ARRAY); put_u32(&w->kv, PBS2P_GGUF_UINT32); put_u64(&w->kv, n);
    for (uint64_t k = 0; k < n; k++) put_u32(&w->kv, v[k]);
    return at;
}
static size_t kv_arr_str(writer *w, const char *key, const char *const *v, uint64_t n) {
    size_t at = kv_key(w, key);
    put_u32(&w->kv, PBS2P_GGUF_ARRAY); put_u32(&w->kv, PBS2P_GGUF_STRING); put_u64(&w->kv, n);
    for (uint64_t k = 0; k < n; k++) put_str(&w->kv, v[k]);
    return at;
}
static void tensor(writer *w, const char *name, uint32_t type, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                   uint64_t ne2, const void *data, size_t nbytes) {
    w->t[w->n_t++] = (tspec){name, type, n_dims, {ne0, ne1, ne2, 1}, data, nbytes};
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* The file: header, key-values, tensor infos, padding, data (each tensor padded to the alignment, as gguf-py). */
static void finish(const writer *w, buf *out, marks *mk) {
    memset(mk, 0, sizeof *mk);
    out->len = 0;
    put(out, "GGUF", 4);
    mk->version = out->len; put_u32(out, 3);
    mk->n_tensors = out->len; put_u64(out, (uint64_t)w->n_t);
    mk->n_kv = out->len; put_u64(out, w->n_kv);
    put(out, w->kv.p, w->kv.len);
    uint64_t rel = 0;
    for (int i = 0; i < w->n_t; i++) {
        const tspec *t = &w->t[i];
        put_str(out, t->name);
        mk->t_ndims[i] = out->len; put_u32(out, t->n_dims);
        mk->t_ne[i] = out->len;
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(out, t->ne[d]);
        mk->t_type[i] = out->len; put_u32(out, t->type);
        mk->t_offset[i] = out->len; put_u64(out, rel);
        mk->t_rel[i] = rel;
        rel = align_up(rel + t->nbytes, w->alignment);
    }
    static const uint8_t zeros[256];
    mk->data_start = align_up(out->len, w->alignment);
    put(out, zeros, mk->data_start - out->len);
    for (int i = 0; i < w->n_t; i++) {
        put(out, w->t[i].data, w->t[i].nbytes);
        mk->data_end = out->len;
        put(out, zeros, align_up(out->len - mk->data_start, w->alignment) - (out->len - mk->data_start));
    }
    if (w->n_t == 0) mk->data_end = out->len;
}

/* An open handle over an exact-size heap copy of some bytes (so a sanitizer sees any read past them). */
typedef struct opened { pbs2p_gguf *f; uint8_t *copy; } opened;

static pbs2p_status open_copy(const uint8_t *p, size_t n, opened *o) {
    o->copy = malloc(n ? n : 1);
    if (n) memcpy(o->copy, p, n);
    o->f = (pbs2p_gguf *)0x1; /* must be reset to NULL on failure */
    pbs2p_status st = pbs2p_gguf_open_memory(o->copy, n, &o->f);
    CHECK(st == PBS2P_OK ? o->f != NULL : o->f == NULL, "handle not NULL after a failed open");
    if (st != PBS2P_OK) { free(o->copy); o->copy = NULL; o->f = NULL; }
    return st;
}
static void close_copy(opened *o) { pbs2p_gguf_close(o->f); free(o->copy); o->f = NULL; o->copy = NULL; }

/* Touch every byte the handle exposes (the sanitizer checks the reads); returns a checksum. */
static uint64_t walk(const pbs2p_gguf *f) {
    pbs2p_gguf_info info;
    uint64_t sum = 0;
    pbs2p_gguf_get_info(f, &info);
    for (uint64_t i = 0; i < info.n_kv; i++) {
        pbs2p_gguf_kv kv;
        pbs2p_gguf_kv_at(f, i, &kv);
        sum += strlen(kv.key);
        static const size_t size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 1, 0, 8, 8, 8};
        size_t n = kv.type == PBS2P_GGUF_ARRAY ? (kv.elem_type == PBS2P_GGUF_STRING ? 0 : (size_t)kv.count * size[kv.elem_type])
                 : kv.type == PBS2P_GGUF_STRING ? (size_t)kv.count : size[kv.type];
        for (size_t k = 0; k < n; k++) sum += ((const uint8_t *)kv.data)[k];
        if (kv.type == PBS2P_GGUF_ARRAY && kv.elem_type == PBS2P_GGUF_STRING)
            for (uint64_t k = 0; k < kv.count; k++) {
                const char *s; size_t len;
                pbs2p_gguf_get_arr_str(f, kv.key, k, &s, &len);
                for (size_t j = 0; j < len; j++) sum += (uint8_t)s[j];
            }
    }
    for (uint64_t i = 0; i < info.n_tensors; i++) {
        pbs2p_gguf_tensor t;
        pbs2p_gguf_tensor_at(f, i, &t);
        for (uint64_t k = 0; k < t.n_bytes; k++) sum += ((const uint8_t *)t.data)[k];
    }
    return sum;
}

/* ---- the valid generic file ---- */

static float f32_data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static uint16_t f16_data[5] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500};
static int8_t i8_data[14] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14};
static uint8_t q8_data[68]; /* two Q8_0 blocks: float16 scale + 32 int8 each */

typedef struct sample { buf file; marks mk; size_t at_align, at_name, at_bool, at_arr_u32, at_arr_str, at_u8; } sample;

static void build_sample(sample *s, uint32_t alignment_type) {
    writer w = {.alignment = 32};
    const uint32_t u32s[3] = {7, 8, 9};
    const char *const strs[3] = {"alpha", "", "gamma"};
    const uint8_t u8 = 200, bools[3] = {1, 0, 1};
    const int8_t i8 = -5; const uint16_t u16 = 60000; const int16_t i16 = -30000; const int32_t i32 = -7;
    const float f32 = 1.5f; const uint64_t u64 = 1ull << 40; const int64_t i64 = -(1ll << 40); const double f64 = 0.25;
    for (size_t k = 0; k < sizeof q8_data; k++) q8_data[k] = (uint8_t)(k * 7);
    s->at_align = kv_raw(&w, "general.alignment", alignment_type, &(uint32_t){32}, 4);
    s->at_name = kv_str(&w, "general.name", "tiny");
    s->at_u8 = kv_raw(&w, "t.u8", PBS2P_GGUF_UINT8, &u8, 1);
    kv_raw(&w, "t.i8", PBS2P_GGUF_INT8, &i8, 1);
    kv_raw(&w, "t.u16", PBS2P_GGUF_UINT16, &u16, 2);
    kv_raw(&w, "t.i16", PBS2P_GGUF_INT16, &i16, 2);
    kv_u32(&w, "t.u32", 123456789u);
    kv_raw(&w, "t.i32", PBS2P_GGUF_INT32, &i32, 4);
    kv_raw(&w, "t.f32", PBS2P_GGUF_FLOAT32, &f32, 4);
    s->at_bool = kv_raw(&w, "t.bool", PBS2P_GGUF_BOOL, &bools[0], 1);
    kv_raw(&w, "t.u64", PBS2P_GGUF_UINT64, &u64, 8);
    kv_raw(&w, "t.i64", PBS2P_GGUF_INT64, &i64, 8);
    kv_raw(&w, "t.f64", PBS2P_GGUF_FLOAT64, &f64, 8);
    kv_str(&w, "t.empty", "");
    s->at_arr_u32 = kv_arr_u32(&w, "t.arr_u32", u32s, 3);
    s->at_arr_str = kv_arr_str(&w, "t.arr_str", strs, 3);
    kv_arr_u32(&w, "t.arr_empty", NULL, 0);
    size_t at = kv_key(&w, "t.arr_bool");
    put_u32(&w.kv, PBS2P_GGUF_ARRAY); put_u32(&w.kv, PBS2P_GGUF_BOOL); put_u64(&w.kv, 3); put(&w.kv, bools, 3);
    (void)at;
    tensor(&w, "w.f32", PBS2P_GGML_F32, 2, 4, 3, 1, f32_data, sizeof f32_data);
    tensor(&w, "w.f16", PBS2P_GGML_F16, 1, 5, 1, 1, f16_data, sizeof f16_data);
    tensor(&w, "w.i8", PBS2P_GGML_I8, 2, 7, 2, 1, i8_data, sizeof i8_data);
    tensor(&w, "w.q8", PBS2P_GGML_Q8_0, 1, 64, 1, 1, q8_data, sizeof q8_data);
    memset(&s->file, 0, sizeof s->file);
    finish(&w, &s->file, &s->mk);
    free(w.kv.p);
}

static void test_valid_file_reads_back(const sample *s) {
    pbs2p_gguf *f = NULL;
    pbs2p_gguf_info info;
    CHECK_ST(pbs2p_gguf_open_memory(s->file.p, s->file.len, &f), PBS2P_OK, "open valid sample");
    if (!f) return;
    CHECK_ST(pbs2p_gguf_get_info(f, &info), PBS2P_OK, "info");
    CHECK(info.version == 3 && info.alignment == 32 && info.n_kv == 18 && info.n_tensors == 4 &&
          info.data_offset == s->mk.data_start && info.file_size == s->file.len,
          "info: v%u align %u kv %" PRIu64 " tensors %" PRIu64, info.version, info.alignment, info.n_kv, info.n_tensors);
    uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; int b;
    const char *str; size_t len; const void *data; uint64_t count;
    CHECK_ST(pbs2p_gguf_get_u32(f, "t.u32", &u32), PBS2P_OK, "u32"); CHECK(u32 == 123456789u, "u32 %u", u32);
    CHECK_ST(pbs2p_gguf_get_i32(f, "t.i32", &i32), PBS2P_OK, "i32"); CHECK(i32 == -7, "i32 %d", i32);
    CHECK_ST(pbs2p_gguf_get_u64(f, "t.u64", &u64), PBS2P_OK, "u64"); CHECK(u64 == 1ull << 40, "u64");
    CHECK_ST(pbs2p_gguf_get_i64(f, "t.i64", &i64), PBS2P_OK, "i64"); CHECK(i64 == -(1ll << 40), "i64");
    CHECK_ST(pbs2p_gguf_get_f32(f, "t.f32", &f32), PBS2P_OK, "f32"); CHECK(f32 == 1.5f, "f32");
    CHECK_ST(pbs2p_gguf_get_f64(f, "t.f64", &f64), PBS2P_OK, "f64"); CHECK(f64 == 0.25, "f64");
    CHECK_ST(pbs2p_gguf_get_bool(f, "t.bool", &b), PBS2P_OK, "bool"); CHECK(b == 1, "bool");
    CHECK_ST(pbs2p_gguf_get_str(f, "general.name", &str, &len), PBS2P_OK, "str");
    CHECK(len == 4 && memcmp(str, "tiny", 4) == 0, "general.name");
    CHECK_ST(pbs2p_gguf_get_str(f, "t.empty", &str, &len), PBS2P_OK, "empty str"); CHECK(len == 0, "empty str");
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.arr_u32", PBS2P_GGUF_UINT32, &data, &count), PBS2P_OK, "arr u32");
    uint32_t third; memcpy(&third, (const uint8_t *)data + 8, 4);
    CHECK(count == 3 && third == 9, "arr u32 count %" PRIu64, count);
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.arr_empty", PBS2P_GGUF_UINT32, &data, &count), PBS2P_OK, "empty arr");
    CHECK(count == 0, "empty arr");
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.arr_str", PBS2P_GGUF_STRING, &data, &count), PBS2P_OK, "arr str");
    CHECK(count == 3 && data == NULL, "arr str");
    CHECK_ST(pbs2p_gguf_get_arr_str(f, "t.arr_str", 2, &str, &len), PBS2P_OK, "arr str [2]");
    CHECK(len == 5 && memcmp(str, "gamma", 5) == 0, "arr str [2]");
    CHECK_ST(pbs2p_gguf_get_arr_str(f, "t.arr_str", 1, &str, &len), PBS2P_OK, "arr str [1]"); CHECK(len == 0, "''");
    /* typed getters: no conversions, clear statuses */
    CHECK_ST(pbs2p_gguf_get_arr_str(f, "t.arr_str", 3, &str, &len), PBS2P_ERR_ARGUMENT, "arr str past the end");
    CHECK_ST(pbs2p_gguf_get_u32(f, "general.name", &u32), PBS2P_ERR_TYPE, "u32 of a string");
    CHECK_ST(pbs2p_gguf_get_i32(f, "t.u32", &i32), PBS2P_ERR_TYPE, "i32 of a u32");
    CHECK_ST(pbs2p_gguf_get_str(f, "t.u32", &str, &len), PBS2P_ERR_TYPE, "str of a u32");
    CHECK_ST(pbs2p_gguf_get_u32(f, "t.arr_u32", &u32), PBS2P_ERR_TYPE, "u32 of an array");
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.arr_u32", PBS2P_GGUF_INT32, &data, &count), PBS2P_ERR_TYPE, "arr of other elems");
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.u32", PBS2P_GGUF_UINT32, &data, &count), PBS2P_ERR_TYPE, "arr of a scalar");
    CHECK_ST(pbs2p_gguf_get_arr(f, "t.arr_u32", PBS2P_GGUF_ARRAY, &data, &count), PBS2P_ERR_ARGUMENT, "arr of arrays");
    CHECK_ST(pbs2p_gguf_get_u32(f, "no.such.key", &u32), PBS2P_ERR_NOT_FOUND, "missing key");
    CHECK_ST(pbs2p_gguf_get_u32(f, NULL, &u32), PBS2P_ERR_NULL, "NULL key");
    pbs2p_gguf_kv kv;
    CHECK_ST(pbs2p_gguf_kv_at(f, 17, &kv), PBS2P_OK, "kv 17");
    CHECK(strcmp(kv.key, "t.arr_bool") == 0 && kv.type == PBS2P_GGUF_ARRAY && kv.elem_type == PBS2P_GGUF_BOOL &&
          kv.count == 3, "kv 17 is %s", kv.key);
    CHECK_ST(pbs2p_gguf_kv_at(f, 18, &kv), PBS2P_ERR_ARGUMENT, "kv past the end");
    /* tensors */
    pbs2p_gguf_tensor t;
    CHECK_ST(pbs2p_gguf_find_tensor(f, "w.q8", &t), PBS2P_OK, "find w.q8");
    CHECK(t.type == PBS2P_GGML_Q8_0 && t.n_dims == 1 && t.ne[0] == 64 && t.ne[1] == 1 && t.n_elements == 64 &&
          t.n_bytes == 68 && t.offset == s->mk.data_start + s->mk.t_rel[3] &&
          memcmp(t.data, q8_data, 68) == 0, "w.q8 info");
    CHECK_ST(pbs2p_gguf_tensor_at(f, 0, &t), PBS2P_OK, "tensor 0");
    CHECK(strcmp(t.name, "w.f32") == 0 && t.n_dims == 2 && t.ne[0] == 4 && t.ne[1] == 3 && t.n_bytes == 48 &&
          memcmp(t.data, f32_data, 48) == 0 && t.offset % 32 == 0, "w.f32 info");
    CHECK_ST(pbs2p_gguf_find_tensor(f, "w.nope", &t), PBS2P_ERR_NOT_FOUND, "missing tensor");
    CHECK_ST(pbs2p_gguf_tensor_at(f, 4, &t), PBS2P_ERR_ARGUMENT, "tensor past the end");
    pbs2p_layer_desc d;
    CHECK_ST(pbs2p_gguf_layer_desc(f, "blk.0.attn_q", &d), PBS2P_ERR_NOT_PBS2P, "layer of a plain GGUF");
    CHECK_ST(pbs2p_gguf_check_linears(f, NULL), PBS2P_ERR_NOT_PBS2P, "check a plain GGUF");
    pbs2p_gguf_close(f);
}

/* Every prefix is truncated until the last tensor's data ends, and a valid file from there on. */
static void test_every_prefix(const sample *s) {
    int wrong = 0;
    for (size_t n = 0; n <= s->file.len; n++) {
        pbs2p_gguf *f = NULL;
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, s->file.p, n);
        pbs2p_status st = pbs2p_gguf_open_memory(copy, n, &f);
        pbs2p_status want = n < s->mk.data_end ? PBS2P_ERR_TRUNCATED : PBS2P_OK;
        if (st != want && wrong++ < 5)
            CHECK(0, "prefix of %zu/%zu bytes: status %d, want %d: %s", n, s->file.len, (int)st, (int)want,
                  pbs2p_last_error());
        if (st == PBS2P_OK) walk(f);
        CHECK(st == PBS2P_OK || f == NULL, "handle set on failure");
        pbs2p_gguf_close(f);
        free(copy);
    }
    CHECK(wrong == 0, "%d prefixes gave the wrong status", wrong);
}

/* Patch fields of a copy of the sample and expect `want` (with a message when it is an error). */
typedef struct patch { size_t at; int width; uint64_t value; } patch;

static void expect_patches(const sample *s, const patch *ps, size_t n, pbs2p_status want, const char *msg,
                           const char *what) {
    buf b = {0};
    put(&b, s->file.p, s->file.len);
    for (size_t k = 0; k < n; k++) {
        if (ps[k].width == 1) b.p[ps[k].at] = (uint8_t)ps[k].value;
        else if (ps[k].width == 4) set_u32(&b, ps[k].at, (uint32_t)ps[k].value);
        else set_u64(&b, ps[k].at, ps[k].value);
    }
    opened o;
    pbs2p_status st = open_copy(b.p, b.len, &o);
    CHECK_ST(st, want, what);
    if (getenv("PBS2P_TEST_VERBOSE")) printf("%-60s -> %s\n", what, st == PBS2P_OK ? "ok" : pbs2p_last_error());
    if (st == PBS2P_OK) walk(o.f);
    else CHECK(strlen(pbs2p_last_error()) > 20, "%s: no message", what);
    if (msg) CHECK(strstr(pbs2p_last_error(), msg) != NULL, "%s: message lacks '%s': %s", what, msg, pbs2p_last_error());
    close_copy(&o);
    free(b.p);
}
#define EXPECT(s, want, what, ...) do { const patch ps_[] = {__VA_ARGS__}; \
    expect_patches((s), ps_, sizeof ps_ / sizeof ps_[0], (want), NULL, (what)); } while (0)
#define expect_patched(s, at, width, value, want, what) EXPECT(s, want, what, {(at), (width), (value)})

static void test_malformed_fields(const sample *s) {
    const marks *mk = &s->mk;
    expect_patched(s, 0, 1, 'g', PBS2P_ERR_GGUF, "bad magic");
    expect_patched(s, mk->version, 4, 1, PBS2P_ERR_UNSUPPORTED, "GGUF v1");
    expect_patched(s, mk->version, 4, 4, PBS2P_ERR_UNSUPPORTED, "GGUF v4");
    expect_patched(s, mk->version, 4, 0x03000000u, PBS2P_ERR_UNSUPPORTED, "big-endian GGUF");
    expect_patched(s, mk->version, 4, 2, PBS2P_OK, "GGUF v2");
    expect_patched(s, mk->n_kv, 8, 1ull << 62, PBS2P_ERR_GGUF, "absurd key-value count");
    expect_patched(s, mk->n_tensors, 8, UINT64_MAX, PBS2P_ERR_GGUF, "absurd tensor count");
    expect_patched(s, mk->n_kv, 8, 100000, PBS2P_ERR_TRUNCATED, "more key-values than the file can hold");
    expect_patched(s, mk->n_tensors, 8, 1000, PBS2P_ERR_TRUNCATED, "more tensors than the file can hold");
    expect_patched(s, mk->n_kv, 8, 17, PBS2P_ERR_GGUF, "one key-value fewer: a tensor name read as a key-value");
    /* key names: general.alignment is the first key, its length field is at byte 24 */
    expect_patched(s, HEADER_BYTES, 8, 0, PBS2P_ERR_GGUF, "empty key");
    expect_patched(s, HEADER_BYTES, 8, PBS2P_GGUF_MAX_NAME + 1, PBS2P_ERR_GGUF, "key longer than the limit");
    expect_patched(s, HEADER_BYTES, 8, UINT64_MAX, PBS2P_ERR_GGUF, "key of 2^64-1 bytes");
    expect_patched(s, HEADER_BYTES + 8 + 3, 1, 0, PBS2P_ERR_GGUF, "key with a NUL byte");
    /* values */
    expect_patched(s, s->at_name, 4, 13, PBS2P_ERR_GGUF, "unknown value type");
    expect_patched(s, s->at_name + 4, 8, 1ull << 62, PBS2P_ERR_GGUF, "absurd string length");
    expect_patched(s, s->at_name + 4, 8, s->file.len, PBS2P_ERR_TRUNCATED, "string past the end");
    expect_patched(s, s->at_bool + 4, 1, 2, PBS2P_ERR_GGUF, "bool of 2");
    expect_patched(s, s->at_arr_u32 + 4, 4, PBS2P_GGUF_ARRAY, PBS2P_ERR_GGUF, "nested array");
    expect_patched(s, s->at_arr_u32 + 4, 4, 77, PBS2P_ERR_GGUF, "array of an unknown type");
    expect_patched(s, s->at_arr_u32 + 8, 8, 1ull << 40, PBS2P_ERR_GGUF, "absurd array length");
    expect_patched(s, s->at_arr_u32 + 8, 8, 1u << 30, PBS2P_ERR_TRUNCATED, "array past the end");
    {   /* refused from the count alone, before a string table is allocated */
        const patch p = {s->at_arr_str + 8, 8, 1u << 30};
        expect_patches(s, &p, 1, PBS2P_ERR_TRUNCATED, "strings, more than the", "string array past the end");
    }
    expect_patched(s, s->at_arr_str + 16, 8, 1ull << 50, PBS2P_ERR_TRUNCATED, "string in an array past the end");
    expect_patched(s, s->at_align + 4, 4, 48, PBS2P_ERR_GGUF, "alignment not a power of two");
    expect_patched(s, s->at_align + 4, 4, 0, PBS2P_ERR_GGUF, "alignment 0");
    expect_patched(s, s->at_align, 4, PBS2P_GGUF_INT32, PBS2P_ERR_TYPE, "general.alignment of type INT32");
    expect_patched(s, s->at_u8 - 2, 1, 'i', PBS2P_ERR_GGUF, "duplicate key (t.u8 renamed t.i8)");
    /* tensor infos: w.f32 is 2-D (4, 3), w.q8 is Q8_0 (64,) */
    expect_patched(s, mk->t_ndims[0], 4, 0, PBS2P_ERR_GGUF, "n_dims 0");
    expect_patched(s, mk->t_ndims[0], 4, 5, PBS2P_ERR_GGUF, "n_dims 5");
    expect_patched(s, mk->t_ne[0], 8, 0, PBS2P_ERR_GGUF, "a zero dimension");
    expect_patched(s, mk->t_ne[0], 8, 1ull << 63, PBS2P_ERR_GGUF, "a dimension above INT64_MAX");
    EXPECT(s, PBS2P_ERR_GGUF, "element count overflow (2^40 x 2^40)",
           {mk->t_ne[0], 8, 1ull << 40}, {mk->t_ne[0] + 8, 8, 1ull << 40});
    EXPECT(s, PBS2P_ERR_GGUF, "byte size overflow (2^62 F32 elements)",
           {mk->t_ne[0], 8, 1ull << 31}, {mk->t_ne[0] + 8, 8, 1ull << 31});
    EXPECT(s, PBS2P_ERR_TRUNCATED, "4 TiB tensor in a small file",
           {mk->t_ne[0], 8, 1ull << 20}, {mk->t_ne[0] + 8, 8, 1ull << 20});
    expect_patched(s, mk->t_ne[3], 8, 16, PBS2P_ERR_GGUF, "Q8_0 row not a multiple of 32");
    expect_patched(s, mk->t_type[0], 4, 16, PBS2P_ERR_UNSUPPORTED, "IQ2_XXS tensor");
    expect_patched(s, mk->t_type[0], 4, 99, PBS2P_ERR_UNSUPPORTED, "unknown tensor type");
    expect_patched(s, mk->t_type[0], 4, UINT32_MAX, PBS2P_ERR_UNSUPPORTED, "tensor type 2^32-1");
    expect_patched(s, mk->t_offset[1], 8, mk->t_rel[1] + 1, PBS2P_ERR_GGUF, "misaligned offset");
    expect_patched(s, mk->t_offset[1], 8, mk->t_rel[1] + 16, PBS2P_ERR_GGUF, "offset aligned to 16, not 32");
    expect_patched(s, mk->t_offset[3], 8, 1ull << 40, PBS2P_ERR_TRUNCATED, "offset beyond the end");
    expect_patched(s, mk->t_offset[3], 8, UINT64_MAX - 31, PBS2P_ERR_TRUNCATED, "offset near 2^64");
    expect_patched(s, mk->t_offset[2], 8, mk->t_rel[1], PBS2P_ERR_GGUF, "overlapping tensors");
    EXPECT(s, PBS2P_OK, "tensors in another order than their data",
           {mk->t_offset[1], 8, mk->t_rel[2]}, {mk->t_offset[2], 8, mk->t_rel[1]});
    EXPECT(s, PBS2P_ERR_GGUF, "duplicate tensor name (w.f16 renamed w.f32)",
           {mk->t_ndims[1] - 2, 1, '3'}, {mk->t_ndims[1] - 1, 1, '2'});
}

/* Random corruption: any status, never a read outside the buffer (checked by the sanitizer build). */
static void test_random_corruption(const sample *s) {
    uint64_t x = 0x2545F4914F6CDD1Dull;
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        buf b = {0};
        put(&b, s->file.p, s->file.len);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            b.p[(x >> 8) % b.len] = (uint8_t)(x >> 40);
        }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t n = it % 3 == 0 ? (size_t)((x >> 20) % b.len) : b.len;
        opened o;
        if (open_copy(b.p, n, &o) == PBS2P_OK) {
            ok++;
            walk(o.f);
            close_copy(&o);
        }
        free(b.p);
    }
    CHECK(ok > 100 && ok < 20000, "%d of 20000 corrupted files opened", ok); /* flips in data keep it valid */
}

/* Through the file system: mmap path, missing files, directories, an empty file, a truncated file. */
static void test_files(const sample *s) {
    char dir[] = "/tmp/pbs2p_gguf_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp failed"); return; }
    char path[64];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    pbs2p_gguf *f = NULL;
    size_t cuts[] = {s->file.len, 0, 3, 30, s->mk.data_end - 1, s->mk.data_end};
    pbs2p_status want[] = {PBS2P_OK, PBS2P_ERR_TRUNCATED, PBS2P_ERR_TRUNCATED, PBS2P_ERR_TRUNCATED,
                           PBS2P_ERR_TRUNCATED, PBS2P_OK};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        FILE *fp = fopen(path, "wb");
        fwrite(s->file.p, 1, cuts[k], fp);
        fclose(fp);
        pbs2p_status st = pbs2p_gguf_open(path, &f);
        CHECK_ST(st, want[k], "open file prefix");
        if (st == PBS2P_OK) {
            pbs2p_gguf_tensor t;
            CHECK_ST(pbs2p_gguf_find_tensor(f, "w.i8", &t), PBS2P_OK, "mapped tensor");
            CHECK(memcmp(t.data, i8_data, sizeof i8_data) == 0 && t.offset % 32 == 0, "mapped data");
            walk(f);
            pbs2p_gguf_close(f);
        }
    }
    CHECK_ST(pbs2p_gguf_open(dir, &f), PBS2P_ERR_IO, "open a directory");
    unlink(path);
    CHECK_ST(pbs2p_gguf_open(path, &f), PBS2P_ERR_IO, "open a missing file");
    CHECK(strstr(pbs2p_last_error(), "m.gguf") != NULL, "message names the file: %s", pbs2p_last_error());
    rmdir(dir);
    CHECK_ST(pbs2p_gguf_open(NULL, &f), PBS2P_ERR_NULL, "NULL path");
    CHECK_ST(pbs2p_gguf_open(path, NULL), PBS2P_ERR_NULL, "NULL output");
    pbs2p_gguf_close(NULL);
}

static void test_type_table(void) {
    size_t be, bb;
    CHECK(pbs2p_ggml_type_size(PBS2P_GGML_Q8_0, &be, &bb) && be == 32 && bb == 34, "Q8_0 block");
    CHECK(pbs2p_ggml_type_size(PBS2P_GGML_Q4_1, &be, &bb) && be == 32 && bb == 20, "Q4_1 block");
    CHECK(pbs2p_ggml_type_size(PBS2P_GGML_I8, &be, &bb) && be == 1 && bb == 1, "I8 block");
    CHECK(!pbs2p_ggml_type_size(16, NULL, NULL) && strcmp(pbs2p_ggml_type_name(16), "IQ2_XXS") == 0, "IQ2_XXS");
    CHECK(!pbs2p_ggml_type_size(-1, NULL, NULL) && pbs2p_ggml_type_name(-1) == NULL, "type -1");
}

/* ---- pbs2p files: one 2 x 16 linear, 4:8, 2 salient columns, split 2, mu ---- */

enum mutation {
    M_NONE, M_VERSION, M_NO_M, M_COUNT, M_MISSING_MU, M_STRAY, M_SHAPE, M_TYPE, M_SALIENT, M_EXTRA_COL_SCALE,
    M_BAD_N, M_UNKNOWN_ARRAY, M_FIELD_TYPE, M_DUP_NAME, M_ORPHAN
};

static uint8_t L_mask[4], L_signs[2] = {0x5A, 0xC3}, L_signs2[2] = {0x01, 0x02}, L_salient[2] = {0x01, 0x01};
static uint8_t L_groups[2] = {0x66, 0x22}; /* kept elements 0 and 4 (salient columns 0, 8) have group 0 */
static uint16_t L_alpha[3 * 2 * 2] = {0x3C00, 0x3800, 0x3400, 0x4000, 0x3A00, 0x3E00, 0x3555, 0x3666, 0x3777, 0x3888,
                                      0x3999, 0x3AAA};
static uint16_t L_alpha2[2 * 2] = {0x3000, 0x3100, 0x3200, 0x3300};
static uint16_t L_mu[3 * 2 * 2] = {0x2C00, 0xAC00, 0x2E00, 0xAE00, 0, 0x2800, 0xA800, 0x2A00, 0xAA00, 0x2400, 0xA400, 0};

static void build_pbs2p(buf *out, enum mutation mu) {
    writer w = {.alignment = 64};
    marks mk;
    const char *names[2] = {mu == M_DUP_NAME ? "blk.0.attn_q" : "blk.0.attn_k", "blk.0.attn_q"};
    /*                   n      rows   cols    gs     split  n_sal  has_mu has_cs  (attn_k, attn_q) */
    uint32_t fields[8][2] = {{8, 4}, {1, 2}, {8, 16}, {8, 8}, {1, 2}, {0, 2}, {0, 1}, {0, 0}};
    static const char *const fnames[8] = {"n", "rows", "cols", "group_size", "split", "n_salient", "has_mu",
                                          "has_col_scale"};
    static uint16_t k_alpha[1] = {0x3C00};
    static uint8_t k_signs[1] = {0xA5};
    if (mu == M_EXTRA_COL_SCALE) fields[7][1] = 1;
    if (mu == M_BAD_N) fields[0][1] = 9;
    kv_u32(&w, "general.alignment", 64);
    if (mu == M_FIELD_TYPE) kv_str(&w, "pbs2p.format_version", "1");
    else kv_u32(&w, "pbs2p.format_version", mu == M_VERSION ? 2 : 1);
    if (mu != M_NO_M) kv_u32(&w, "pbs2p.m", 8);
    kv_arr_str(&w, "pbs2p.linear.names", names, 2);
    for (int k = 0; k < 8; k++) {
        char key[64];
        snprintf(key, sizeof key, "pbs2p.linear.%s", fnames[k]);
        kv_arr_u32(&w, key, fields[k], mu == M_COUNT && k == 3 ? 1 : 2);
    }
    /* attn_k: 1 x 8, N = M (no mask), no salient, split 1, no mu: signs + alpha only */
    tensor(&w, "blk.0.attn_k.pbs2p.signs", PBS2P_GGML_I8, 2, 1, 1, 1, k_signs, 1);
    tensor(&w, "blk.0.attn_k.pbs2p.alpha", PBS2P_GGML_F16, 3, 1, 1, 1, k_alpha, 2);
    /* attn_q: mask (2, 2) [w_mask 7 x 2 groups = 14 bits], signs (2, 1), signs2 (2, 1), salient (2,),
     * groups (2, 1), alpha (3, 2, 2), alpha2 (2, 2), mu (3, 2, 2) */
    tensor(&w, "blk.0.attn_q.pbs2p.mask", PBS2P_GGML_I8, 2, 2, 2, 1, L_mask, 4);
    tensor(&w, "blk.0.attn_q.pbs2p.signs", PBS2P_GGML_I8, 2, 1, 2, 1, L_signs, 2);
    tensor(&w, "blk.0.attn_q.pbs2p.signs2", PBS2P_GGML_I8, 2, 1, 2, 1, L_signs2, 2);
    tensor(&w, "blk.0.attn_q.pbs2p.salient", PBS2P_GGML_I8, 1, mu == M_SHAPE ? 1 : 2, 1, 1, L_salient,
           mu == M_SHAPE ? 1 : 2);
    tensor(&w, "blk.0.attn_q.pbs2p.groups", mu == M_TYPE ? PBS2P_GGML_I16 : PBS2P_GGML_I8, mu == M_TYPE ? 1 : 2,
           1, mu == M_TYPE ? 1 : 2, 1, L_groups, 2);
    tensor(&w, "blk.0.attn_q.pbs2p.alpha", PBS2P_GGML_F16, 3, 2, 2, 3, L_alpha, sizeof L_alpha);
    tensor(&w, "blk.0.attn_q.pbs2p.alpha2", PBS2P_GGML_F16, 2, 2, 2, 1, L_alpha2, sizeof L_alpha2);
    if (mu != M_MISSING_MU) tensor(&w, "blk.0.attn_q.pbs2p.mu", PBS2P_GGML_F16, 3, 2, 2, 3, L_mu, sizeof L_mu);
    if (mu == M_STRAY) tensor(&w, "blk.0.attn_k.pbs2p.mu", PBS2P_GGML_F16, 3, 1, 1, 1, k_alpha, 2);
    if (mu == M_ORPHAN) tensor(&w, "blk.9.attn_q.pbs2p.signs", PBS2P_GGML_I8, 2, 1, 1, 1, k_signs, 1);
    if (mu == M_UNKNOWN_ARRAY) tensor(&w, "blk.0.attn_q.pbs2p.beta", PBS2P_GGML_F16, 1, 1, 1, 1, k_alpha, 2);
    static uint8_t sal_bad[2] = {0x03, 0x01};
    if (mu == M_SALIENT) w.t[5].data = sal_bad;
    tensor(&w, "output_norm.weight", PBS2P_GGML_F32, 1, 3, 1, 1, f32_data, 12);
    memset(out, 0, sizeof *out);
    finish(&w, out, &mk);
    free(w.kv.p);
}

/* Random corruption of a pbs2p file: descriptors that are returned stay inside the file and either
 * dequantize or are refused by the format reference (checked by the sanitizer build). */
static void test_pbs2p_corruption(void) {
    buf b;
    build_pbs2p(&b, M_NONE);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int described = 0;
    for (int it = 0; it < 20000; it++) {
        buf c = {0};
        put(&c, b.p, b.len);
        for (int k = 0; k < 1 + it % 3; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            c.p[(x >> 8) % c.len] ^= (uint8_t)(1u << ((x >> 40) & 7));
        }
        opened o;
        if (open_copy(c.p, c.len, &o) == PBS2P_OK) {
            const char *names[2] = {"blk.0.attn_q", "blk.0.attn_k"};
            for (int k = 0; k < 2; k++) {
                pbs2p_layer_desc d;
                if (pbs2p_gguf_layer_desc(o.f, names[k], &d) != PBS2P_OK) continue;
                described++;
                float out[32];
                pbs2p_layer_dequantize_ref(&d, out, (size_t)d.rows * (size_t)d.cols <= 32 ? (size_t)d.rows * d.cols : 0);
            }
            close_copy(&o);
        }
        free(c.p);
    }
    free(b.p);
    CHECK(described > 1000, "only %d corrupted pbs2p files gave a descriptor", described);
}

static void test_pbs2p_layer(void) {
    L_mask[0] = 0x00; L_mask[1] = 0x00; L_mask[2] = 69 & 0xFF; L_mask[3] = 0x00; /* row 1 group 0: code 69 = 0xF0 */
    buf b;
    build_pbs2p(&b, M_NONE);
    opened o;
    CHECK_ST(open_copy(b.p, b.len, &o), PBS2P_OK, "open pbs2p sample");
    pbs2p_gguf *f = o.f;
    if (f) {
        pbs2p_layer_desc d, want = {
            .format_version = 1, .rows = 2, .cols = 16, .n = 4, .m = 8, .group_size = 8, .split = 2,
            .has_salient = 1, .n_salient = 2, .has_mu = 1, .has_col_scale = 0, .mask = L_mask, .signs = L_signs,
            .signs2 = L_signs2, .salient = L_salient, .groups = L_groups, .alpha = L_alpha, .alpha2 = L_alpha2,
            .mu = L_mu};
        CHECK_ST(pbs2p_gguf_layer_desc(f, "blk.0.attn_q", &d), PBS2P_OK, "layer desc attn_q");
        CHECK(d.rows == 2 && d.cols == 16 && d.n == 4 && d.m == 8 && d.group_size == 8 && d.split == 2 &&
              d.has_salient == 1 && d.n_salient == 2 && d.has_mu == 1 && d.has_col_scale == 0 && !d.col_scale,
              "attn_q metadata");
        CHECK(d.mask && memcmp(d.mask, L_mask, 4) == 0 && memcmp(d.groups, L_groups, 2) == 0 &&
              memcmp(d.alpha, L_alpha, sizeof L_alpha) == 0 && memcmp(d.mu, L_mu, sizeof L_mu) == 0, "attn_q streams");
        float got[32], ref[32];
        CHECK_ST(pbs2p_layer_dequantize_ref(&d, got, 32), PBS2P_OK, "dequantize from the file");
        CHECK_ST(pbs2p_layer_dequantize_ref(&want, ref, 32), PBS2P_OK, "dequantize from the arrays");
        CHECK(memcmp(got, ref, sizeof got) == 0, "file and arrays dequantize alike");
        pbs2p_layer *L = NULL;
        CHECK_ST(pbs2p_layer_prepare(&d, &L), PBS2P_OK, "prepare from the file");
        pbs2p_layer_free(L);
        CHECK_ST(pbs2p_gguf_layer_desc(f, "blk.0.attn_k", &d), PBS2P_OK, "layer desc attn_k");
        CHECK(d.n == 8 && !d.mask && !d.mu && !d.groups && d.signs && d.alpha, "attn_k: N = M, no mu, no groups");
        CHECK_ST(pbs2p_gguf_layer_desc(f, "blk.0.attn_v", &d), PBS2P_ERR_NOT_FOUND, "unknown linear");
        CHECK_ST(pbs2p_gguf_layer_desc(f, "blk.0.attn", &d), PBS2P_ERR_NOT_FOUND, "prefix of a linear");
        CHECK_ST(pbs2p_gguf_layer_desc(f, NULL, &d), PBS2P_ERR_NULL, "NULL linear");
        close_copy(&o);
    }
    free(b.p);
    struct { enum mutation m; const char *linear; pbs2p_status want; const char *what; } cases[] = {
        {M_VERSION, "blk.0.attn_q", PBS2P_ERR_VERSION, "pbs2p.format_version 2"},
        {M_FIELD_TYPE, "blk.0.attn_q", PBS2P_ERR_TYPE, "pbs2p.format_version of type string"},
        {M_NO_M, "blk.0.attn_q", PBS2P_ERR_FORMAT, "no pbs2p.m"},
        {M_COUNT, "blk.0.attn_q", PBS2P_ERR_FORMAT, "pbs2p.linear.group_size shorter than the names"},
        {M_MISSING_MU, "blk.0.attn_q", PBS2P_ERR_FORMAT, "has_mu without a mu tensor"},
        {M_STRAY, "blk.0.attn_k", PBS2P_ERR_FORMAT, "a mu tensor without has_mu"},
        {M_STRAY, "blk.0.attn_q", PBS2P_OK, "attn_q beside a stray attn_k array"},
        {M_SHAPE, "blk.0.attn_q", PBS2P_ERR_FORMAT, "salient of the wrong shape"},
        {M_TYPE, "blk.0.attn_q", PBS2P_ERR_FORMAT, "groups of type I16"},
        {M_SALIENT, "blk.0.attn_q", PBS2P_ERR_FORMAT, "salient popcount != n_salient"},
        {M_SALIENT, "blk.0.attn_k", PBS2P_OK, "attn_k beside a bad attn_q"},
        {M_EXTRA_COL_SCALE, "blk.0.attn_q", PBS2P_ERR_FORMAT, "has_col_scale without a col_scale tensor"},
        {M_BAD_N, "blk.0.attn_q", PBS2P_ERR_FORMAT, "N = 9 > M"},
        {M_UNKNOWN_ARRAY, "blk.0.attn_q", PBS2P_ERR_FORMAT, "unknown packed array"},
        /* whole-file checks (linear NULL: pbs2p_gguf_check_linears) */
        {M_NONE, NULL, PBS2P_OK, "check a valid pbs2p file"},
        {M_DUP_NAME, NULL, PBS2P_ERR_FORMAT, "a linear listed twice"},
        {M_ORPHAN, NULL, PBS2P_ERR_FORMAT, "a packed tensor of an unlisted linear"},
        {M_ORPHAN, "blk.0.attn_q", PBS2P_OK, "attn_q beside an unlisted linear's tensor"},
        {M_STRAY, NULL, PBS2P_ERR_FORMAT, "check a file with a stray array"},
        {M_VERSION, NULL, PBS2P_ERR_VERSION, "check a file of format version 2"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        build_pbs2p(&b, cases[k].m);
        CHECK_ST(open_copy(b.p, b.len, &o), PBS2P_OK, cases[k].what);
        if (o.f) {
            pbs2p_layer_desc d;
            uint64_t n_linears = 0;
            pbs2p_status st = cases[k].linear ? pbs2p_gguf_layer_desc(o.f, cases[k].linear, &d)
                                              : pbs2p_gguf_check_linears(o.f, &n_linears);
            if (!cases[k].linear && st == PBS2P_OK) CHECK(n_linears == 2, "%" PRIu64 " linears", n_linears);
            CHECK_ST(st, cases[k].want, cases[k].what);
            if (getenv("PBS2P_TEST_VERBOSE"))
                printf("%-60s -> %s\n", cases[k].what, st == PBS2P_OK ? "ok" : pbs2p_last_error());
            close_copy(&o);
        }
        free(b.p);
    }
    test_pbs2p_corruption();
}

int main(void) {
    sample s;
    build_sample(&s, PBS2P_GGUF_UINT32);
    test_type_table();
    test_valid_file_reads_back(&s);
    test_every_prefix(&s);
    test_malformed_fields(&s);
    test_random_corruption(&s);
    test_files(&s);
    test_pbs2p_layer();
    free(s.file.p);
    if (failures) {
        fprintf(stderr, "%d GGUF check(s) failed\n", failures);
        return 1;
    }
    printf("all GGUF checks passed\n");
    return 0;
}
