// Native simulated board: the ProtocolEngine's Verilog (Verilator) behind a loopback TCP socket.
//
// Usage: serve_main PORT --busy HEX --flush HEX --flush-answer HEX --flush-cycles N
//                   --flush-settle N [--once] [--quiet CYCLES] [--poll CYCLES] [--stats FILE]
// Prints "listening PORT" on stdout once it listens. One client at a time; the design keeps its
// state between connections. Each cycle: a pending received byte is offered on i (valid held until
// ready; the design's receive window keeps i always ready, so a client's requests in flight go in
// one byte a cycle), o bytes are taken (o.ready = 1) and sent. While the design is busy (or has moved a byte
// or been busy in the last QUIET cycles) the socket is polled without blocking every POLL cycles
// (every IDLE_POLL cycles once the design is idle); otherwise the server blocks in poll()
// (simulated time stands still until the client sends).
// A connection that comes while a client is served is refused: sent the --busy bytes (see Door) and
// closed. When the client leaves (without --once), its unsent answers and unfed bytes are dropped
// and the design is flushed: it is fed the --flush bytes (a delimiter and ABORT) and runs, its
// output dropped, until a frame equal to the --flush-answer bytes (ABORTED) has come out and no byte
// has come out for --flush-settle cycles since; if that has not happened within --flush-cycles, the
// server exits with status 3. The bytes come from Python
// (spinemu.sim.board.base.Flush, BUSY_ANSWER): this program knows frames end at 0x00, no more.
// SIGTERM/SIGINT end it cleanly; --stats FILE gets a JSON snapshot whenever the design goes idle:
// sim_cycles, bytes_in/out, connections, refused (connections sent the busy bytes), flushes,
// compute_s (wall time not blocked on the client: simulating and moving bytes, flushes included),
// idle_compute_s (the part of compute_s spent simulating cycles after the design had answered
// everything it was sent, before the client's next byte came) and wait_client_s (wall time
// blocked in poll() until the client sent).
// With SPINEMU_NATIVE_TRACE set, every cycle that moves a byte or changes busy goes to stderr.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

// Socket polls while the design is idle: a request sent during the QUIET window is taken within
// this many cycles instead of when the window ends.
static const long IDLE_POLL = 16;
// The frame delimiter (hdl/framing.py).
static const unsigned char DELIMITER = 0x00;
// Seconds a refused connection waits for its client to send, and to leave once told.
static const double REFUSED_S = 1.0;
// Exit status when the design did not answer the flush.
static const int FLUSH_FAILED = 3;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Stats {
    unsigned long long cycles = 0, bytes_in = 0, bytes_out = 0, connections = 0, refused = 0,
                       flushes = 0;
    double sim_s = 0.0, wait_s = 0.0, idle_s = 0.0;
};

typedef std::vector<unsigned char> Bytes;

static bool from_hex(const char* text, Bytes& out) {
    size_t n = strlen(text);
    if (n % 2) return false;
    for (size_t k = 0; k < n; k += 2) {
        char pair[3] = {text[k], text[k + 1], 0};
        char* end;
        out.push_back((unsigned char)strtoul(pair, &end, 16));
        if (*end) return false;
    }
    return true;
}

// Verilator detects a rising edge by comparing clk with its value at the previous eval(), so a
// cycle takes two evals. Every eval first recomputes the logic that reads a top-level input, and in
// Amaranth's Verilog that is all next-state logic (it reads rst): the falling-edge eval computes
// nothing new and cost a fifth of the run time. Where the model has the edge detector's variable
// (Verilator 5), clearing it records the falling edge; otherwise the falling edge is evaluated.
template <typename Root>
static auto record_clock_low(Root* root, Vtop*, int)
    -> decltype(root->__Vtrigprevexpr___TOP__clk__0 = 0, void()) {
    root->__Vtrigprevexpr___TOP__clk__0 = 0;
}
template <typename Root>
static void record_clock_low(Root*, Vtop* top, long) { top->eval(); }

// One clock cycle: the rising edge (registers update, outputs settle), then clk low again.
static void clock_cycle(Vtop* top) {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    record_clock_low(top->rootp, top, 0);
}

static void write_stats(const char* path, const Stats& s) {
    if (!path) return;
    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (!f) return;
    fprintf(f,
            "{\"sim_cycles\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"connections\": %llu, "
            "\"refused\": %llu, \"flushes\": %llu, \"compute_s\": %.6f, \"idle_compute_s\": %.6f, "
            "\"wait_client_s\": %.6f}\n",
            s.cycles, s.bytes_in, s.bytes_out, s.connections, s.refused, s.flushes, s.sim_s,
            s.idle_s, s.wait_s);
    fclose(f);
    rename(tmp.c_str(), path);
}

static bool send_all(int fd, const unsigned char* data, size_t n) {
    while (n) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd p = {fd, POLLOUT, 0};
                poll(&p, 1, 100);
                if (g_stop) return false;
                continue;
            }
            return false;
        }
        data += k;
        n -= (size_t)k;
    }
    return true;
}

// The listening socket. While a client is served, a new connection is refused: it is sent the busy
// bytes when its client first sends (pyserial's socket:// drops what arrives before it has opened
// the port) or REFUSED_S after it came, what it sends is dropped, and it is closed once its client
// has gone (or REFUSED_S after it was told): closing it with the client's bytes unread would reset
// it, which can destroy the busy bytes before the client reads them.
struct Door {
    struct Refused {
        int fd;
        bool told;
        double until;   // when to tell it, or to close it, anyway
    };
    int lfd;
    Bytes busy;
    std::vector<Refused> refused;

    // Adds the listening socket, then the refused connections, to a poll() set.
    void watch(std::vector<struct pollfd>& fds) const {
        fds.push_back({lfd, POLLIN, 0});
        for (const auto& r : refused) fds.push_back({r.fd, POLLIN, 0});
    }
    // After poll(): serves the refused connections. `at`: the listening socket's index in fds.
    void drain(const std::vector<struct pollfd>& fds, size_t at) {
        double t = now_s();
        for (size_t k = refused.size(); k-- > 0;) {
            Refused& r = refused[k];
            bool gone = false, spoke = false;
            if (fds[at + 1 + k].revents) {
                unsigned char buf[4096];
                ssize_t n = recv(r.fd, buf, sizeof buf, 0);
                gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                                  errno != EINTR);
                spoke = n > 0;
            }
            if (!gone && !r.told && (spoke || t > r.until)) {
                gone = send(r.fd, busy.data(), busy.size(), MSG_NOSIGNAL) != (ssize_t)busy.size()
                       || shutdown(r.fd, SHUT_WR) != 0;
                r.told = true;
                r.until = t + REFUSED_S;
            } else if (r.told && t > r.until) {
                gone = true;
            }
            if (gone) {
                close(r.fd);
                refused.erase(refused.begin() + (long)k);
            }
        }
    }
    void refuse(Stats& st) {
        int c = accept(lfd, nullptr, nullptr);
        if (c < 0) return;
        st.refused++;
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        refused.push_back({c, false, now_s() + REFUSED_S});
    }
};

// Reads what is there (timeout_ms: 0 = do not wait, -1 = until data/stop), refusing connections
// that come meanwhile. Returns false once the client is gone. A new connection is refused only
// while the client has nothing more to read: one that came as the client left (its last bytes,
// then the end, still unread) is the next client.
static bool receive(int fd, Door& door, Bytes& pending, int timeout_ms, Stats& st) {
    std::vector<struct pollfd> fds;
    for (;;) {
        fds.assign(1, pollfd{fd, POLLIN, 0});
        door.watch(fds);
        int r = poll(fds.data(), fds.size(), timeout_ms < 0 ? 200 : timeout_ms);
        if (r < 0 && errno != EINTR) return false;
        bool data = r > 0 && fds[0].revents;
        if (data) {
            unsigned char buf[65536];
            ssize_t k = recv(fd, buf, sizeof buf, 0);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK))
                return false;
            if (k > 0) {
                pending.insert(pending.end(), buf, buf + k);
                st.bytes_in += (unsigned long long)k;
            }
        }
        if (r >= 0) {
            door.drain(fds, 1);
            struct pollfd more = {fd, POLLIN, 0};
            if ((fds[1].revents & POLLIN) && !(data && poll(&more, 1, 0) > 0)) door.refuse(st);
        }
        if (data || timeout_ms >= 0 || g_stop) return true;
    }
}

// One clock cycle of the byte streams: feed[head] offered on i (held until taken; the inputs are
// settled before the edge only when they change) and a byte taken from o (o.ready is always 1).
struct Link {
    bool last_offer = false;
    unsigned char last_byte = 0;
    struct Cycle {
        bool took_in, o_valid;
        unsigned char o_byte;
    };
    void reset(Vtop* top) {
        top->i___05Fvalid = 0;
        top->i___05Fpayload = 0;
        top->eval();
        last_offer = false;
        last_byte = 0;
    }
    Cycle step(Vtop* top, const std::vector<unsigned char>& feed, size_t head) {
        bool offer = head < feed.size();
        unsigned char offer_byte = offer ? feed[head] : 0;
        if (offer != last_offer || (offer && offer_byte != last_byte)) {
            // Inputs change: settle the combinational outputs (i.ready) before the edge.
            top->i___05Fvalid = offer;
            top->i___05Fpayload = offer_byte;
            top->eval();
            last_offer = offer;
            last_byte = offer_byte;
        }
        Cycle c = {offer && top->i___05Fready, (bool)top->o___05Fvalid,
                   (unsigned char)top->o___05Fpayload};
        clock_cycle(top);
        return c;
    }
};

struct Flush {
    Bytes request, answer;
    long cycles = 0, settle = 0;
};

// After a client has left: feeds the design the flush request and runs it, its output dropped,
// until a frame equal to the flush answer has come out and then no byte for the settle cycles.
// last_out: the last byte it sent (if not a delimiter, the design was in the middle of a frame,
// and what ends first is that frame's tail). False if that has not happened within the flush's
// cycles (a stop request ends the flush too).
static bool flush_design(Vtop* top, const Flush& f, unsigned char last_out, Stats& st) {
    Bytes frame;
    bool skip = last_out != DELIMITER;
    size_t head = 0;
    Link link;
    link.reset(top);
    bool answered = false;
    long c = 0, last = 0;     // cycles since the flush began; the last byte out, once answered
    for (; c < f.cycles && !g_stop; ++c) {
        if (answered && c - last >= f.settle) break;
        Link::Cycle cycle = link.step(top, f.request, head);
        ++st.cycles;
        if (cycle.took_in) ++head;
        if (!cycle.o_valid) continue;
        last = c;
        frame.push_back(cycle.o_byte);
        if (cycle.o_byte != DELIMITER) continue;
        if (!skip && frame == f.answer) answered = true;
        skip = false;
        frame.clear();
    }
    top->i___05Fvalid = 0;
    top->eval();
    return (answered && c - last >= f.settle) || g_stop;
}

int main(int argc, char** argv) {
    int port = 0;
    bool trace = getenv("SPINEMU_NATIVE_TRACE") != nullptr;
    bool once = false;
    long quiet = 4 * (255 + 3) + 256;
    long poll_every = 4096;
    const char* stats_path = nullptr;
    Door door;
    Flush flush;
    bool hex_ok = true;
    for (int a = 1; a < argc; ++a) {
        std::string arg = argv[a];
        if (arg == "--once") once = true;
        else if (arg == "--quiet" && a + 1 < argc) quiet = atol(argv[++a]);
        else if (arg == "--poll" && a + 1 < argc) poll_every = atol(argv[++a]);
        else if (arg == "--stats" && a + 1 < argc) stats_path = argv[++a];
        else if (arg == "--busy" && a + 1 < argc) hex_ok &= from_hex(argv[++a], door.busy);
        else if (arg == "--flush" && a + 1 < argc) hex_ok &= from_hex(argv[++a], flush.request);
        else if (arg == "--flush-answer" && a + 1 < argc)
            hex_ok &= from_hex(argv[++a], flush.answer);
        else if (arg == "--flush-cycles" && a + 1 < argc) flush.cycles = atol(argv[++a]);
        else if (arg == "--flush-settle" && a + 1 < argc) flush.settle = atol(argv[++a]);
        else if (arg[0] != '-' && arg[0] != '+') port = atoi(arg.c_str());
    }
    if (!hex_ok || door.busy.empty() || flush.request.empty() || flush.answer.empty() ||
        flush.cycles <= 0 || flush.settle <= 0) {
        fprintf(stderr, "--busy, --flush and --flush-answer (hex bytes), --flush-cycles and "
                        "--flush-settle are required\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 8) < 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 2;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr*)&addr, &alen);
    door.lfd = lfd;

    VerilatedContext* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
    Vtop* top = new Vtop{ctx};
    Stats st;
    top->clk = 0;
    top->rst = 1;
    top->i___05Fvalid = 0;
    top->i___05Fpayload = 0;
    top->o___05Fready = 1;
    top->uart_frame_errors = 0;
    top->uart_overruns = 0;
    top->eval();
    for (int k = 0; k < 4; ++k) {
        clock_cycle(top);
        ++st.cycles;
    }
    top->rst = 0;
    top->eval();

    printf("listening %d\n", (int)ntohs(addr.sin_port));
    fflush(stdout);

    std::vector<struct pollfd> fds;
    while (!g_stop) {
        fds.clear();
        door.watch(fds);
        int r = poll(fds.data(), fds.size(), 200);
        if (r < 0) continue;
        door.drain(fds, 0);
        if (!(fds[0].revents & POLLIN)) continue;
        int fd = accept(lfd, nullptr, nullptr);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        st.connections++;
        std::vector<unsigned char> pending, out;
        size_t head = 0;
        long idle = quiet;        // cycles since a byte last moved
        long since_poll = 0;
        bool alive = true;
        int last_busy = 0;
        Link link;
        unsigned char last_out = DELIMITER;   // the last byte out
        bool answered = true;     // the design has answered every byte it took in
        bool waiting = false;     // ... and is idle with nothing received: waiting for the client
        double wait_began = 0.0;
        link.reset(top);
        double t0 = now_s();
        while (alive && !g_stop) {
            Link::Cycle cycle = link.step(top, pending, head);
            bool took_in = cycle.took_in, o_valid = cycle.o_valid;
            unsigned char o_byte = cycle.o_byte;
            ++st.cycles;
            bool moved = false;
            if (took_in) { ++head; moved = true; answered = false; }
            if (o_valid) {
                out.push_back(o_byte);
                moved = true;
                answered |= o_byte == DELIMITER;
                last_out = o_byte;
            }
            if (head == pending.size() && head) { pending.clear(); head = 0; }
            if (moved || top->busy) idle = 0; else ++idle;
            if (trace && (moved || top->busy != last_busy))
                fprintf(stderr, "c=%llu in=%d out=%d/%02x busy=%d pend=%zu\n", st.cycles,
                        (int)took_in, (int)o_valid, o_byte, (int)top->busy, pending.size() - head);
            last_busy = top->busy;
            if (!out.empty() && ((o_valid && o_byte == DELIMITER) || out.size() >= 4096 ||
                                 !top->o___05Fvalid)) {
                // Send when a frame ends or the output pauses.
                if (!send_all(fd, out.data(), out.size())) alive = false;
                st.bytes_out += out.size();
                out.clear();
            }
            ++since_poll;
            if (since_poll >= (idle ? IDLE_POLL : poll_every) || (head == pending.size() && moved)) {
                since_poll = 0;
                if (!receive(fd, door, pending, 0, st)) alive = false;
            }
            bool waiting_now = answered && head == pending.size() && !top->busy &&
                               !top->o___05Fvalid;
            if (waiting_now != waiting) {
                double t = now_s();
                if (waiting) st.idle_s += t - wait_began;
                wait_began = t;
                waiting = waiting_now;
            }
            bool quiet_now = head == pending.size() && !top->busy && !top->o___05Fvalid &&
                             idle >= quiet && out.empty();
            if (quiet_now && alive) {
                double t1 = now_s();
                st.sim_s += t1 - t0;
                if (waiting) st.idle_s += t1 - wait_began;
                write_stats(stats_path, st);
                if (!receive(fd, door, pending, -1, st)) alive = false;
                t0 = wait_began = now_s();
                st.wait_s += t0 - t1;
                since_poll = 0;
            }
        }
        double t1 = now_s();
        st.sim_s += t1 - t0;
        if (waiting) st.idle_s += t1 - wait_began;
        top->i___05Fvalid = 0;
        close(fd);
        if (once || g_stop) break;
        // The client left: nothing the design still sends is for the next one.
        bool flushed = flush_design(top, flush, last_out, st);
        st.flushes++;
        st.sim_s += now_s() - t1;
        write_stats(stats_path, st);
        if (!flushed) {
            fprintf(stderr, "the design did not answer the flush within %ld cycles\n",
                    flush.cycles);
            close(lfd);
            return FLUSH_FAILED;
        }
    }
    close(lfd);
    write_stats(stats_path, st);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
