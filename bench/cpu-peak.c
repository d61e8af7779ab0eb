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
#define ITERS 20000000L

struct job {
    float seed;
    float out;
};

static void *
run(void *p)
{
    struct job *j = p;
    vf acc[CHAINS];
    vf a, b;
    for (int l = 0; l < LANES; l++) {
        a[l] = 1.0f + j->seed * 1e-7f;
        b[l] = 1e-7f;
    }
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++)
            acc[c][l] = (float)c;
    for (long i = 0; i < ITERS; i++) {
        /* acc = acc * a + b: contracted to one FMA per chain (GNU C contracts by default) */
        for (int c = 0; c < CHAINS; c++)
            acc[c] = acc[c] * a + b;
        __asm__ volatile("" : "+x"(a)); /* keep the loop from being folded */
    }
    float s = 0;
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++)
            s += acc[c][l];
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
