/* replay.c — runs the fuzz target it is linked with (fuzz_gguf.c or fuzz_tokenizer.c) over the files and directories
 * given on the command line, without libFuzzer, so the seed corpus and every regression input are checked by
 * ctest and the sanitizer build on any compiler.
 * Exit status 0 when every input ran (a crash or sanitizer report ends the process first), 2 on I/O errors. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { perror(path); return 2; }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *p = realloc(buf, cap);
            if (!p) { fclose(fp); free(buf); fprintf(stderr, "%s: out of memory\n", path); return 2; }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) { free(buf); fprintf(stderr, "%s: read error\n", path); return 2; }
    /* an exact-size copy, so reading one byte past the input is caught by ASan */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) { free(buf); return 2; }
    if (len) memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file directly inside `dir`, in name order (README-like files included: any bytes are valid input). */
static int run_dir(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d) { perror(dir); return 2; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t need = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(need);
        if (!p) { rc = 2; break; }
        snprintf(p, need, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) { free(p); continue; }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **q = realloc(names, cap * sizeof *q);
            if (!q) { free(p); rc = 2; break; }
            names = q;
        }
        names[n++] = p;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!rc) rc = run_file(names[i]);
        free(names[i]);
    }
    free(names);
    *count += n;
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]); return 2; }
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); return 2; }
        int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : (count++, run_file(argv[i]));
        if (rc) return rc;
    }
    printf("replayed %zu input(s)\n", count);
    return 0;
}
