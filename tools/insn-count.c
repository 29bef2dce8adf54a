/*
 * QEMU TCG plugin for gradguard's footprint measurements: counts the guest instructions a
 * Cortex-M firmware executes between two marker functions.
 *
 * Counting starts after the translation block that begins at `start` and stops at the one
 * that begins at `stop`; markers may be hit repeatedly and the counts add up. Cortex-M is
 * a single vCPU, so plain counters suffice.
 *
 * Arguments: start=0xADDR,stop=0xADDR,out=FILE[,profile=FILE] (the Thumb bit of an address
 * is ignored). Output (to FILE): "insns_total N", "region_insns N", "region_hits N" and
 * "region_accesses N" (the guest's loads and stores inside the region, one per register a
 * multi-register transfer moves), one per line. With profile=FILE, also one line "0xADDR N" per translation block executed inside
 * the region: the instructions it executed there (tools/count-insns.sh --profile sums them
 * per function).
 * Build: cc -shared -fPIC -O2 -o insn-count.so insn-count.c (tools/count-insns.sh does).
 *
 * Distributions do not all ship qemu-plugin.h, so the handful of declarations used (plugin
 * API version 1, unchanged since QEMU 4.2) are written out here.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef uint32_t qemu_plugin_meminfo_t;

void qemu_plugin_register_vcpu_tb_trans_cb(
    qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
                                          void (*cb)(unsigned int, void *),
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn,
                                      void (*cb)(unsigned int, qemu_plugin_meminfo_t, uint64_t,
                                                 void *),
                                      enum qemu_plugin_cb_flags flags,
                                      enum qemu_plugin_mem_rw rw, void *userdata);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
                                    void (*cb)(qemu_plugin_id_t, void *), void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

struct block {
    uint64_t address;
    uint64_t instructions;
    uint64_t in_region; /* executions inside the region */
    struct block *next;
};

static uint64_t total, region, hits, accesses;
static struct block *blocks; /* every translated block, for the profile */
static const char *profile;
static uint64_t start = UINT64_MAX, stop = UINT64_MAX;
static int inside;
static const char *out = "/dev/stdout";

static void executed(unsigned int vcpu, void *data)
{
    const struct block *b = data;
    (void)vcpu;
    total += b->instructions;
    if (b->address == stop) {
        inside = 0;
    }
    if (inside) {
        region += b->instructions;
        ((struct block *)data)->in_region++;
    }
    if (b->address == start) {
        inside = 1;
        hits++;
    }
}

/* One load or store of the guest inside the region (QEMU splits a multi-register load or
 * store into one access per register). */
static void accessed(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *data)
{
    (void)vcpu;
    (void)info;
    (void)vaddr;
    (void)data;
    accesses += inside;
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = malloc(sizeof *b);
    (void)id;
    if (b == NULL) {
        abort();
    }
    b->address = qemu_plugin_tb_vaddr(tb);
    b->instructions = qemu_plugin_tb_n_insns(tb);
    b->in_region = 0;
    b->next = blocks;
    blocks = b;
    for (size_t i = 0; i < b->instructions; i++) {
        qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), accessed,
                                         QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, executed, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void finished(qemu_plugin_id_t id, void *data)
{
    FILE *f = fopen(out, "w");
    (void)id;
    (void)data;
    if (f != NULL) {
        fprintf(f,
                "insns_total %" PRIu64 "\nregion_insns %" PRIu64 "\nregion_hits %" PRIu64
                "\nregion_accesses %" PRIu64 "\n",
                total, region, hits, accesses);
        fclose(f);
    }
    if (profile != NULL && (f = fopen(profile, "w")) != NULL) {
        for (const struct block *b = blocks; b != NULL; b = b->next) {
            if (b->in_region != 0) {
                fprintf(f, "0x%" PRIx64 " %" PRIu64 "\n", b->address, b->instructions * b->in_region);
            }
        }
        fclose(f);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "start=", 6) == 0) {
            start = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
        } else if (strncmp(argv[i], "stop=", 5) == 0) {
            stop = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1;
        } else if (strncmp(argv[i], "profile=", 8) == 0) {
            profile = strdup(argv[i] + 8);
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            out = strdup(argv[i] + 4);
        } else {
            fprintf(stderr, "insn-count: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, finished, NULL);
    return 0;
}
