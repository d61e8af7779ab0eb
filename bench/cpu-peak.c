/* The CPU's fp32 FMA peak: independent chains of vector FMAs in registers, one thread per
 * requested core, so run-ops.sh can say what fraction of the machine an op reaches.
 *
 * Built with -O2 -march=native (bench/meson.build) so the compiler uses the widest FMA the
 * machine has; GCC vector extensions keep it portable C. Prints
 * "RESULT cpu_fma_peak_<threads>t <GFLOP/s> <ms> 1" (a fused multiply-add counts 2).
 * Usage: cpu-peak [threads] (default 2). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif

typedef float vf __attribute__((vector_size(LANES * 4)));

#define CHAINS 12 /* enough independent FMAs to cover latency x ports on current cores */
#define ITERS 200000000L

struct job {
    float seed;
    float out;
};

/* Twelve named accumulators (not an array) so they live in registers. */
#define CHAIN_STEP(v) v = v * a + b
static void *
run(void *p)
{
    struct job *j = p;
    vf a, b;
    for (int l = 0; l < LANES; l++) {
        a[l] = 1.0f + j->seed * 1e-7f;
        b[l] = 1e-7f;
    }
    vf c0 = b * 0.0f, c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5;
    vf c6 = c0 + 6, c7 = c0 + 7, c8 = c0 + 8, c9 = c0 + 9, c10 = c0 + 10, c11 = c0 + 11;
    for (long i = 0; i < ITERS; i++) {
        /* acc = acc * a + b: one FMA each (-ffp-contract=fast in bench/meson.build) */
        CHAIN_STEP(c0); CHAIN_STEP(c1); CHAIN_STEP(c2); CHAIN_STEP(c3);
        CHAIN_STEP(c4); CHAIN_STEP(c5); CHAIN_STEP(c6); CHAIN_STEP(c7);
        CHAIN_STEP(c8); CHAIN_STEP(c9); CHAIN_STEP(c10); CHAIN_STEP(c11);
        __asm__ volatile("" : "+v"(a)); /* keep the loop from being folded */
    }
    vf sum = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    float s = 0;
    for (int l = 0; l < LANES; l++)
        s += sum[l];
    j->out = s;
    return NULL;
}

int
main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "usage: cpu-peak [threads]\n");
        return 2;
    }
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    struct job *jobs = calloc((size_t)threads, sizeof *jobs);
    if (!t || !jobs)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++) {
        jobs[i].seed = (float)i;
        if (pthread_create(&t[i], NULL, run, &jobs[i]) != 0)
            return 1;
    }
    float sink = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        sink += jobs[i].out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double flops = 2.0 * LANES * CHAINS * (double)ITERS * threads;
    printf("RESULT cpu_fma_peak_%dt %.1f %.1f 1\n", threads, flops / s * 1e-9, s * 1e3);
    fprintf(stderr, "cpu-peak: %d-lane vectors, checksum %g\n", LANES, (double)sink);
    free(t);
    free(jobs);
    return 0;
}
