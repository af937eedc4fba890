/*
 * insn_counter: a QEMU TCG plugin (QEMU 7.2 plugin API, version 1) that counts executed guest
 * instructions into a shared memory page, so the guest program can read its own count at any
 * point: the guest mmaps the same file and reads a little-endian uint64 at offset 0.
 * scripts/pi/bench.py uses it as the loop's clock, so per-stage "latencies" come out in
 * instructions.
 *
 * Built by scripts/pi/bench.sh against include/qemu/qemu-plugin.h from Debian's qemu source
 * package (the same version as the qemu-user binary that loads it):
 *     gcc -shared -fPIC -O2 -I<qemu>/include/qemu $(pkg-config --cflags glib-2.0) \
 *         insn_counter.c -o insn_counter.so
 *
 * Arguments:  page=PATH     the counter file (created, 4096 bytes; required)
 *             inline=on     count with QEMU's inline add (faster, but not atomic: concurrent
 *                           guest threads can lose counts); default off: an atomic add per
 *                           executed translation block
 * Page layout (uint64): [0] instructions executed, all threads; [1] guest threads started.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t *page;
static bool use_inline;

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    __atomic_fetch_add(&page[0], (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (use_inline) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &page[0], n);
    } else {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                             (void *)(uintptr_t)n);
    }
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    __atomic_fetch_add(&page[1], 1, __ATOMIC_RELAXED);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq && strncmp(argv[i], "page", eq - argv[i]) == 0) {
            path = eq + 1;
        } else if (eq && strncmp(argv[i], "inline", eq - argv[i]) == 0) {
            if (!qemu_plugin_bool_parse("inline", eq + 1, &use_inline)) {
                fprintf(stderr, "insn_counter: bad value in %s\n", argv[i]);
                return -1;
            }
        } else {
            fprintf(stderr, "insn_counter: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (!path) {
        fprintf(stderr, "insn_counter: needs page=PATH\n");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, 4096) != 0) {
        fprintf(stderr, "insn_counter: %s: %s\n", path, strerror(errno));
        return -1;
    }
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED) {
        fprintf(stderr, "insn_counter: mmap %s: %s\n", path, strerror(errno));
        return -1;
    }
    page[0] = page[1] = 0;
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    return 0;
}
