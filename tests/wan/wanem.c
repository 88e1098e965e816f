/*
 * wanem.c - gdml-wanem: a userspace WAN between network namespaces, for
 * tests and benchmarks on hosts without netem.
 *
 *   gdml-wanem [--seed N] NAME=NETNS ...
 *
 * Each NETNS (a name under /run/netns) holds a TUN device "wan0", made and
 * addressed by the harness (wan.py): node i of the list has 10.77.0.<i+1>/24.
 * gdml-wanem attaches to every wan0, and routes each IPv4 packet one node
 * sends to the node its destination address names, through the link for
 * that direction. A link delays a packet by its one-way delay plus a jitter
 * drawn uniformly from [-jitter, +jitter], serializes it at its rate, drops
 * it at random with its loss probability, drops it when its queue is full
 * (tail drop, as a router does), and drops everything while it is cut. A
 * link never reorders: a packet leaves no earlier than the one before it.
 * TCP runs across it for real, so loss, retransmission and congestion
 * control are the kernel's own.
 *
 * Commands, one per line on standard input; each is answered "ok" or
 * "error: why" on standard output:
 *   set SRC DST KEY=VALUE ...  SRC, DST: node names or * (any); keys:
 *                              delay=MS jitter=MS rate=RATE (e.g. 50mbit,
 *                              800kbit, 0 = unlimited) loss=P (0..1)
 *                              queue=BYTES
 *   cut NODE [NODE2]           every link to and from NODE (or between the
 *                              two) drops everything
 *   heal NODE [NODE2]          undoes cut
 *   stats                      one line per link that carried packets
 *   quit
 * It prints "ready" once attached, and exits when standard input closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_NODES 32
#define MAX_PACKET 65536
#define NET_PREFIX 0x0a4d0000u /* 10.77.0.0/24 */

typedef struct packet {
    struct packet *next;
    int64_t due_us;
    size_t len;
    unsigned char data[];
} packet;

typedef struct link_params {
    double delay_ms, jitter_ms;
    double rate_bps; /* 0: unlimited */
    double loss;     /* probability a packet is dropped */
    size_t queue_bytes;
} link_params;

typedef struct wan_link {
    link_params p;
    bool cut;
    packet *head, *tail;
    size_t queued;                      /* bytes waiting */
    int64_t busy_until_us, last_due_us; /* serialization, and order */
    uint64_t passed, bytes, lost, dropped_cut, dropped_full;
} wan_link;

typedef struct node {
    char name[64];
    int fd;
} node;

static node nodes[MAX_NODES];
static int n_nodes;
static wan_link links[MAX_NODES][MAX_NODES]; /* [from][to] */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t unroutable;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* xorshift64*, uniform in [0, 1). */
static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

/* A router's buffer: the rate's worth of 100 ms, at least 64 KiB, or 4 MiB unlimited. */
static size_t default_queue(double rate_bps)
{
    if (rate_bps <= 0)
        return 4u << 20;
    double bytes = rate_bps / 8.0 * 0.1;
    return bytes < 65536 ? 65536 : (size_t)bytes;
}

static int attach(const char *name, const char *netns, int home, char *why, size_t cap)
{
    char path[300];
    snprintf(path, sizeof path, "/run/netns/%s", netns);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
        snprintf(why, cap, "no network namespace '%s' (%s)", netns, strerror(errno));
        return -1;
    }
    if (setns(ns, CLONE_NEWNET) != 0) {
        snprintf(why, cap, "cannot enter namespace '%s': %s", netns, strerror(errno));
        close(ns);
        return -1;
    }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "wan0");
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
        snprintf(why, cap, "cannot attach to wan0 in '%s' for node %s: %s", netns, name,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (setns(home, CLONE_NEWNET) != 0) {
        snprintf(why, cap, "cannot return to the first namespace: %s", strerror(errno));
        return -1;
    }
    return fd;
}

/* A packet in from node `from`: routed, judged and queued on its link. */
static void on_packet(int from, const unsigned char *data, size_t len, int64_t now)
{
    if (len < 20 || (data[0] >> 4) != 4) {
        unroutable++;
        return;
    }
    uint32_t dst =
        (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
    int to = (int)(dst & 0xff) - 1;
    if ((dst & 0xffffff00u) != NET_PREFIX || to < 0 || to >= n_nodes || to == from) {
        unroutable++;
        return;
    }
    wan_link *l = &links[from][to];
    if (l->cut) {
        l->dropped_cut++;
        return;
    }
    if (l->p.loss > 0 && uniform() < l->p.loss) {
        l->lost++;
        return;
    }
    if (l->queued + len > l->p.queue_bytes) {
        l->dropped_full++;
        return;
    }
    packet *pk = malloc(sizeof *pk + len);
    if (!pk) {
        l->dropped_full++;
        return;
    }
    memcpy(pk->data, data, len);
    pk->len = len;
    pk->next = NULL;
    int64_t start = l->busy_until_us > now ? l->busy_until_us : now;
    int64_t sent = start;
    if (l->p.rate_bps > 0)
        sent += (int64_t)((double)len * 8.0 * 1e6 / l->p.rate_bps);
    l->busy_until_us = sent;
    double jitter = l->p.jitter_ms > 0 ? (2.0 * uniform() - 1.0) * l->p.jitter_ms : 0.0;
    double delay_ms = l->p.delay_ms + jitter;
    int64_t due = sent + (int64_t)((delay_ms > 0 ? delay_ms : 0) * 1000.0);
    if (due < l->last_due_us)
        due = l->last_due_us; /* never reorder */
    l->last_due_us = due;
    pk->due_us = due;
    if (l->tail)
        l->tail->next = pk;
    else
        l->head = pk;
    l->tail = pk;
    l->queued += len;
}

/* Delivers what is due; returns the earliest time something else is due (or -1). */
static int64_t deliver(int64_t now)
{
    int64_t next = -1;
    for (int f = 0; f < n_nodes; f++)
        for (int t = 0; t < n_nodes; t++) {
            wan_link *l = &links[f][t];
            while (l->head && l->head->due_us <= now) {
                packet *pk = l->head;
                l->head = pk->next;
                if (!l->head)
                    l->tail = NULL;
                l->queued -= pk->len;
                if (l->cut) {
                    l->dropped_cut++; /* cut while in flight */
                } else if (write(nodes[t].fd, pk->data, pk->len) == (ssize_t)pk->len) {
                    l->passed++;
                    l->bytes += pk->len;
                } else {
                    l->dropped_full++;
                }
                free(pk);
            }
            if (l->head && (next < 0 || l->head->due_us < next))
                next = l->head->due_us;
        }
    return next;
}

static int node_index(const char *name)
{
    for (int i = 0; i < n_nodes; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return i;
    return -1;
}

/* "50mbit", "800kbit", "1gbit", "12000" (bits per second); false if malformed. */
static bool parse_rate(const char *s, double *bps)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return false;
    double unit = 1;
    if (strcasecmp(end, "kbit") == 0)
        unit = 1e3;
    else if (strcasecmp(end, "mbit") == 0)
        unit = 1e6;
    else if (strcasecmp(end, "gbit") == 0)
        unit = 1e9;
    else if (*end && strcasecmp(end, "bit") != 0)
        return false;
    *bps = v * unit;
    return true;
}

/* Applies KEY=VALUE to p; false (why set) if it is not one. */
static bool apply_param(link_params *p, bool *queue_set, const char *kv, char *why, size_t cap)
{
    const char *eq = strchr(kv, '=');
    if (!eq) {
        snprintf(why, cap, "'%s' is not KEY=VALUE", kv);
        return false;
    }
    size_t klen = (size_t)(eq - kv);
    const char *v = eq + 1;
    char *end;
    double x = strtod(v, &end);
    bool number = end != v && *end == '\0';
    if (klen == 5 && strncmp(kv, "delay", 5) == 0 && number && x >= 0)
        p->delay_ms = x;
    else if (klen == 6 && strncmp(kv, "jitter", 6) == 0 && number && x >= 0)
        p->jitter_ms = x;
    else if (klen == 4 && strncmp(kv, "loss", 4) == 0 && number && x >= 0 && x <= 1)
        p->loss = x;
    else if (klen == 5 && strncmp(kv, "queue", 5) == 0 && number && x >= 1500) {
        p->queue_bytes = (size_t)x;
        *queue_set = true;
    } else if (klen == 4 && strncmp(kv, "rate", 4) == 0 && parse_rate(v, &p->rate_bps))
        ;
    else {
        snprintf(why, cap,
                 "bad '%s': use delay=MS jitter=MS rate=RATE (50mbit) loss=0..1 queue=BYTES", kv);
        return false;
    }
    return true;
}

static bool matches(const char *pattern, int i)
{
    return strcmp(pattern, "*") == 0 || strcmp(pattern, nodes[i].name) == 0;
}

static bool cmd_set(char **argv, int argc, char *why, size_t cap)
{
    if (argc < 4) {
        snprintf(why, cap, "set SRC DST KEY=VALUE ...");
        return false;
    }
    if ((strcmp(argv[1], "*") != 0 && node_index(argv[1]) < 0) ||
        (strcmp(argv[2], "*") != 0 && node_index(argv[2]) < 0)) {
        snprintf(why, cap, "unknown node in '%s %s'", argv[1], argv[2]);
        return false;
    }
    for (int f = 0; f < n_nodes; f++)
        for (int t = 0; t < n_nodes; t++) {
            if (f == t || !matches(argv[1], f) || !matches(argv[2], t))
                continue;
            link_params p = links[f][t].p;
            bool queue_set = false;
            for (int a = 3; a < argc; a++)
                if (!apply_param(&p, &queue_set, argv[a], why, cap))
                    return false;
            if (!queue_set && p.rate_bps != links[f][t].p.rate_bps)
                p.queue_bytes = default_queue(p.rate_bps);
            links[f][t].p = p;
        }
    return true;
}

static bool cmd_cut(char **argv, int argc, bool cut, char *why, size_t cap)
{
    int a = argc > 1 ? node_index(argv[1]) : -1;
    int b = argc > 2 ? node_index(argv[2]) : -1;
    if (a < 0 || (argc > 2 && b < 0) || argc > 3) {
        snprintf(why, cap, "%s NODE [NODE2] with known nodes", argv[0]);
        return false;
    }
    for (int o = 0; o < n_nodes; o++)
        if (o != a && (b < 0 || o == b))
            links[a][o].cut = links[o][a].cut = cut;
    return true;
}

static void cmd_stats(void)
{
    for (int f = 0; f < n_nodes; f++)
        for (int t = 0; t < n_nodes; t++) {
            const wan_link *l = &links[f][t];
            if (l->passed + l->lost + l->dropped_cut + l->dropped_full == 0)
                continue;
            printf("link %s %s passed=%llu bytes=%llu lost=%llu cut=%llu full=%llu\n",
                   nodes[f].name, nodes[t].name, (unsigned long long)l->passed,
                   (unsigned long long)l->bytes, (unsigned long long)l->lost,
                   (unsigned long long)l->dropped_cut, (unsigned long long)l->dropped_full);
        }
    printf("unroutable=%llu\n", (unsigned long long)unroutable);
}

/* One command line; false when it says quit. */
static bool command(char *line)
{
    char *argv[64];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok && argc < 64; tok = strtok(NULL, " \t\r\n"))
        argv[argc++] = tok;
    if (argc == 0)
        return true;
    char why[256] = "";
    bool ok;
    if (strcmp(argv[0], "quit") == 0)
        return false;
    if (strcmp(argv[0], "set") == 0)
        ok = cmd_set(argv, argc, why, sizeof why);
    else if (strcmp(argv[0], "cut") == 0 || strcmp(argv[0], "heal") == 0)
        ok = cmd_cut(argv, argc, argv[0][0] == 'c', why, sizeof why);
    else if (strcmp(argv[0], "stats") == 0) {
        cmd_stats();
        ok = true;
    } else {
        snprintf(why, sizeof why, "unknown command '%s': set, cut, heal, stats, quit", argv[0]);
        ok = false;
    }
    if (ok)
        printf("ok\n");
    else
        printf("error: %s\n", why);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv)
{
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
        fprintf(stderr, "gdml-wanem: cannot open this process's network namespace: %s\n",
                strerror(errno));
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            rng_state ^= strtoull(argv[++i], NULL, 10) * 0x9e3779b97f4a7c15ull;
            continue;
        }
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i] || !eq[1] || n_nodes == MAX_NODES ||
            (size_t)(eq - argv[i]) >= sizeof nodes[0].name) {
            fprintf(stderr, "usage: gdml-wanem [--seed N] NAME=NETNS ... (at most %d)\n",
                    MAX_NODES);
            return 2;
        }
        node *nd = &nodes[n_nodes];
        snprintf(nd->name, sizeof nd->name, "%.*s", (int)(eq - argv[i]), argv[i]);
        char why[512];
        if ((nd->fd = attach(nd->name, eq + 1, home, why, sizeof why)) < 0) {
            fprintf(stderr, "gdml-wanem: %s\n", why);
            return 1;
        }
        n_nodes++;
    }
    if (n_nodes < 2) {
        fprintf(stderr, "usage: gdml-wanem [--seed N] NAME=NETNS NAME=NETNS ...\n");
        return 2;
    }
    if (rng_state == 0)
        rng_state = 1;
    for (int f = 0; f < n_nodes; f++)
        for (int t = 0; t < n_nodes; t++)
            links[f][t].p.queue_bytes = default_queue(0);
    printf("ready\n");
    fflush(stdout);

    static unsigned char buf[MAX_PACKET];
    char line[4096];
    size_t line_len = 0;
    struct pollfd pfd[MAX_NODES + 1];
    for (;;) {
        int64_t now = now_us();
        int64_t next = deliver(now);
        int timeout = next < 0 ? 1000 : (int)((next - now + 999) / 1000);
        for (int i = 0; i < n_nodes; i++)
            pfd[i] = (struct pollfd){.fd = nodes[i].fd, .events = POLLIN};
        pfd[n_nodes] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(pfd, (nfds_t)n_nodes + 1, timeout) < 0 && errno != EINTR)
            return 1;
        now = now_us();
        for (int i = 0; i < n_nodes; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            /* A bounded batch per device, so that one busy node starves no other. */
            for (int k = 0; k < 64; k++) {
                ssize_t n = read(nodes[i].fd, buf, sizeof buf);
                if (n <= 0)
                    break;
                on_packet(i, buf, (size_t)n, now);
            }
        }
        if (pfd[n_nodes].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
            if (n <= 0)
                return 0;
            line_len += (size_t)n;
            line[line_len] = '\0';
            char *start = line, *nl;
            while ((nl = strchr(start, '\n'))) {
                *nl = '\0';
                if (!command(start))
                    return 0;
                start = nl + 1;
            }
            line_len = strlen(start);
            memmove(line, start, line_len + 1);
            if (line_len == sizeof line - 1)
                line_len = 0;
        }
    }
}
