// Native simulated board: the ProtocolEngine's Verilog (Verilator) behind a loopback TCP socket.
//
// Usage: serve_main PORT [--once] [--quiet CYCLES] [--poll CYCLES] [--stats FILE]
// Prints "listening PORT" on stdout once it listens. One client at a time; the design keeps its
// state between connections. Each cycle: a pending received byte is offered on i (valid held until
// ready), o bytes are taken (o.ready = 1) and sent. While the design is busy (or has moved a byte
// or been busy in the last QUIET cycles) the socket is polled without blocking every POLL cycles
// (every IDLE_POLL cycles once the design is idle); otherwise the server blocks in poll()
// (simulated time stands still until the client sends).
// SIGTERM/SIGINT end it cleanly; --stats FILE gets a JSON snapshot whenever the design goes idle:
// sim_cycles, bytes_in/out, connections, compute_s (wall time not blocked on the client: simulating
// and moving bytes), idle_compute_s (the part of compute_s spent simulating cycles after the design
// had answered everything it was sent, before the client's next byte came) and wait_client_s
// (wall time blocked in poll() until the client sent).
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

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Stats {
    unsigned long long cycles = 0, bytes_in = 0, bytes_out = 0, connections = 0;
    double sim_s = 0.0, wait_s = 0.0, idle_s = 0.0;
};

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
            "\"compute_s\": %.6f, \"idle_compute_s\": %.6f, \"wait_client_s\": %.6f}\n",
            s.cycles, s.bytes_in, s.bytes_out, s.connections, s.sim_s, s.idle_s, s.wait_s);
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

// Reads what is there (timeout_ms: 0 = do not wait, -1 = until data/stop). Returns false once the
// client is gone.
static bool receive(int fd, std::vector<unsigned char>& pending, int timeout_ms, Stats& st) {
    struct pollfd p = {fd, POLLIN, 0};
    if (timeout_ms < 0) {
        while (!g_stop) {
            int r = poll(&p, 1, 200);
            if (r > 0) break;
            if (r < 0 && errno != EINTR) return false;
        }
        if (g_stop) return true;
    } else {
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0) return true;
    }
    unsigned char buf[65536];
    ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k < 0 && (errno == EAGAIN || errno == EINTR || errno == EWOULDBLOCK)) return true;
    if (k <= 0) return false;
    pending.insert(pending.end(), buf, buf + k);
    st.bytes_in += (unsigned long long)k;
    return true;
}

int main(int argc, char** argv) {
    int port = 0;
    bool trace = getenv("SPINEMU_NATIVE_TRACE") != nullptr;
    bool once = false;
    long quiet = 4 * (255 + 3) + 256;
    long poll_every = 4096;
    const char* stats_path = nullptr;
    for (int a = 1; a < argc; ++a) {
        std::string arg = argv[a];
        if (arg == "--once") once = true;
        else if (arg == "--quiet" && a + 1 < argc) quiet = atol(argv[++a]);
        else if (arg == "--poll" && a + 1 < argc) poll_every = atol(argv[++a]);
        else if (arg == "--stats" && a + 1 < argc) stats_path = argv[++a];
        else if (arg[0] != '-' && arg[0] != '+') port = atoi(arg.c_str());
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
    if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 1) < 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 2;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr*)&addr, &alen);

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

    while (!g_stop) {
        struct pollfd lp = {lfd, POLLIN, 0};
        int r = poll(&lp, 1, 200);
        if (r <= 0) continue;
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
        bool last_offer = false;
        unsigned char last_byte = 0;
        bool answered = true;     // the design has answered every byte it took in
        bool waiting = false;     // ... and is idle with nothing received: waiting for the client
        double wait_began = 0.0;
        top->i___05Fvalid = 0;
        top->i___05Fpayload = 0;
        top->eval();
        double t0 = now_s();
        while (alive && !g_stop) {
            // Signals as they are before the rising edge (clk low, settled).
            bool offer = head < pending.size();
            unsigned char offer_byte = offer ? pending[head] : 0;
            if (offer != last_offer || (offer && offer_byte != last_byte)) {
                // Inputs change: settle the combinational outputs (i.ready) before the edge.
                top->i___05Fvalid = offer;
                top->i___05Fpayload = offer_byte;
                top->eval();
                last_offer = offer;
                last_byte = offer_byte;
            }
            bool took_in = offer && top->i___05Fready;
            bool o_valid = top->o___05Fvalid;
            unsigned char o_byte = top->o___05Fpayload;
            clock_cycle(top);
            ++st.cycles;
            bool moved = false;
            if (took_in) { ++head; moved = true; answered = false; }
            if (o_valid) { out.push_back(o_byte); moved = true; answered |= o_byte == 0x00; }
            if (head == pending.size() && head) { pending.clear(); head = 0; }
            if (moved || top->busy) idle = 0; else ++idle;
            if (trace && (moved || top->busy != last_busy))
                fprintf(stderr, "c=%llu in=%d out=%d/%02x busy=%d pend=%zu\n", st.cycles,
                        (int)took_in, (int)o_valid, o_byte, (int)top->busy, pending.size() - head);
            last_busy = top->busy;
            if (!out.empty() && ((o_valid && o_byte == 0x00) || out.size() >= 4096 || !top->o___05Fvalid)) {
                // Send when a frame ends or the output pauses.
                if (!send_all(fd, out.data(), out.size())) alive = false;
                st.bytes_out += out.size();
                out.clear();
            }
            ++since_poll;
            if (since_poll >= (idle ? IDLE_POLL : poll_every) || (head == pending.size() && moved)) {
                since_poll = 0;
                if (!receive(fd, pending, 0, st)) alive = false;
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
                if (!receive(fd, pending, -1, st)) alive = false;
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
        write_stats(stats_path, st);
        if (once) break;
    }
    close(lfd);
    write_stats(stats_path, st);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
