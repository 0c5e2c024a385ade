#include "addon/crash_handler.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/call_record.h"

namespace rpn {

namespace {

// Everything below the install section runs inside the signal handler: no allocation, no locks,
// no stdio; only system calls and the few libc functions named in the comments.

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction previous[NSIG];  // the handlers ours replaced, chained to after the report
char crashDir[PATH_MAX];          // absolute; created on the first crash
char addonLine[PATH_MAX + 128];   // "addon: <path> (libtorch x.y.z)"
char exePath[PATH_MAX] = "(the executable)";  // the main program's module name in backtraces
using WasmTrapHandler = bool (*)(int, siginfo_t*, void*);
WasmTrapHandler wasmTrap = nullptr;  // V8's, when the process exports it (Node does)
std::atomic<bool> reporting{false};
std::atomic<bool> installed{false};

// Buffered output to stderr and the crash file at once (write(2) only).
class Out {
 public:
  void addFd(int fd) { if (fd >= 0 && nfds_ < 2) fds_[nfds_++] = fd; }
  Out& s(const char* text) {
    for (; text && *text; ++text) c(*text);
    return *this;
  }
  Out& c(char ch) {
    if (n_ == sizeof(buf_)) flush();
    buf_[n_++] = ch;
    return *this;
  }
  Out& dec(int64_t v) {
    if (v < 0) { c('-'); v = -v; }
    char tmp[24];
    int k = 0;
    do { tmp[k++] = static_cast<char>('0' + v % 10); v /= 10; } while (v > 0);
    while (k > 0) c(tmp[--k]);
    return *this;
  }
  Out& dec2(int v) { return c(static_cast<char>('0' + v / 10)).c(static_cast<char>('0' + v % 10)); }
  Out& hex(uint64_t v, int minDigits = 1) {
    char tmp[16];
    int k = 0;
    do { tmp[k++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v > 0 || k < minDigits);
    s("0x");
    while (k > 0) c(tmp[--k]);
    return *this;
  }
  void flush() {
    for (int i = 0; i < nfds_; ++i) {
      size_t off = 0;
      while (off < n_) {
        ssize_t w = ::write(fds_[i], buf_ + off, n_ - off);
        if (w <= 0 && errno != EINTR) break;
        if (w > 0) off += static_cast<size_t>(w);
      }
    }
    n_ = 0;
  }

 private:
  char buf_[1024];
  size_t n_ = 0;
  int fds_[2] = {-1, -1};
  int nfds_ = 0;
};

const char* signalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV (segmentation fault)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGFPE: return "SIGFPE (arithmetic exception)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "signal";
  }
}

const char* codeName(int sig, int code) {
  if (code <= 0) return code == SI_TKILL || code == SI_USER ? "sent by kill/raise/abort" : "sent by a process";
  switch (sig) {
    case SIGSEGV: return code == SEGV_MAPERR ? "SEGV_MAPERR: address not mapped" : code == SEGV_ACCERR ? "SEGV_ACCERR: access not permitted" : "";
    case SIGBUS: return code == BUS_ADRALN ? "BUS_ADRALN: misaligned address" : code == BUS_ADRERR ? "BUS_ADRERR: no such physical address (e.g. past the end of a mapped file)" : "";
    case SIGFPE: return code == FPE_INTDIV ? "FPE_INTDIV: integer division by zero" : code == FPE_INTOVF ? "FPE_INTOVF: integer overflow" : "";
    case SIGILL: return code == ILL_ILLOPN ? "ILL_ILLOPN: illegal operand" : code == ILL_ILLOPC ? "ILL_ILLOPC: illegal opcode" : "";
    default: return "";
  }
}

// Days since 1970-01-01 -> civil date (H. Hinnant's algorithm); plain arithmetic.
void civil(int64_t days, int* y, int* m, int* d) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *y = static_cast<int>(yoe + era * 400 + (*m <= 2));
}

// "YYYY-MM-DD HH:MM:SS UTC"
void putTime(Out& o, int64_t t) {
  int y, m, d;
  civil(t / 86400, &y, &m, &d);
  const int sec = static_cast<int>(t % 86400);
  o.dec(y).c('-').dec2(m).c('-').dec2(d).c(' ');
  o.dec2(sec / 3600).c(':').dec2(sec / 60 % 60).c(':').dec2(sec % 60).s(" UTC");
}

// A small string builder over a fixed array, for the crash file's path.
struct PathBuf {
  char p[PATH_MAX + 64];
  size_t n = 0;
  void s(const char* t) { for (; *t && n + 1 < sizeof(p); ++t) p[n++] = *t; p[n] = '\0'; }
};

// mkdir -p (mkdir(2) per component).
void makeDirs(char* path) {
  for (char* q = path + 1; *q; ++q) {
    if (*q != '/') continue;
    *q = '\0';
    ::mkdir(path, 0755);
    *q = '/';
  }
  ::mkdir(path, 0755);
}

// Opens <crashDir>/crash-<time>-<pid>.txt; fills `name` with its path. -1 on failure.
int openCrashFile(int64_t now, PathBuf* name) {
  if (!crashDir[0]) return -1;
  char dir[PATH_MAX];
  std::memcpy(dir, crashDir, sizeof(dir));
  makeDirs(dir);
  name->s(crashDir);
  name->s("/crash-");
  int y, mo, d;
  civil(now / 86400, &y, &mo, &d);
  const int sec = static_cast<int>(now % 86400);
  char stamp[32];
  int k = 0;
  auto put = [&](int64_t v, int width) {
    char t[20];
    int j = 0;
    do { t[j++] = static_cast<char>('0' + v % 10); v /= 10; } while (v > 0 || j < width);
    while (j > 0) stamp[k++] = t[--j];
  };
  put(y, 4); put(mo, 2); put(d, 2); stamp[k++] = '-';
  put(sec / 3600, 2); put(sec / 60 % 60, 2); put(sec % 60, 2); stamp[k++] = '-';
  put(::getpid(), 1);
  stamp[k] = '\0';
  name->s(stamp);
  name->s(".txt");
  return ::open(name->p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
}

void putCommandLine(Out& o) {
  int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return;
  for (ssize_t i = 0; i < n - 1; ++i) if (buf[i] == '\0') buf[i] = ' ';
  buf[n] = '\0';
  o.s("command: ").s(buf).s(n == static_cast<ssize_t>(sizeof(buf) - 1) ? " ..." : "").c('\n');
}

void putCalls(Out& o, int64_t faultingThread) {
  const rp::calls::Slot* slots = rp::calls::slots();
  int count = 0;
  for (int i = 0; i < rp::calls::kSlots; ++i) {
    const auto& s = slots[i];
    if (s.state.load(std::memory_order_acquire) != 2) continue;
    if (count++ == 0) o.s("engine calls running:\n");
    const char* op = s.operation.load(std::memory_order_relaxed);
    const char* stage = s.stage.load(std::memory_order_relaxed);
    const int64_t item = s.item.load(std::memory_order_relaxed), items = s.items.load(std::memory_order_relaxed);
    const int64_t done = s.done.load(std::memory_order_relaxed), total = s.total.load(std::memory_order_relaxed);
    const int64_t thread = s.thread.load(std::memory_order_relaxed);
    o.s("  engine ").dec(static_cast<int64_t>(s.engine.load(std::memory_order_relaxed))).s(" (").s(s.label).s("): ");
    o.s(op ? op : "?").s(", stage ").s(stage ? stage : "(start)");
    if (items > 0) o.s(", image ").dec(item).s(" of ").dec(items);
    if (total > 0) o.s(", step ").dec(done).s(" of ").dec(total);
    o.s(", thread ").dec(thread).s(thread == faultingThread ? " (the faulting thread)" : "").c('\n');
  }
  if (count == 0) o.s("engine calls running: none (the fault is outside reconpatch's engine calls, or at exit)\n");
}

// Frames from the faulting instruction outwards, each as module + offset (what addr2line takes
// with -e <module>) and, where the module exports it, the symbol. Uses backtrace() (libgcc's
// unwinder, preloaded at install) and dladdr1(), which reads the loader's tables.
void putBacktrace(Out& o, uintptr_t pc) {
  void* frames[64];
  const int n = ::backtrace(frames, 64);
  int first = 0;
  for (int i = 0; i < n; ++i)
    if (reinterpret_cast<uintptr_t>(frames[i]) == pc) { first = i; break; }
  o.s("backtrace (").dec(n - first).s(" frames; symbolise one with: addr2line -Cfie <module> <offset>):\n");
  for (int i = first; i < n; ++i) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(frames[i]);
    // Past the first frame these are return addresses: point at the call instruction instead.
    const uintptr_t at = i == first ? addr : addr - 1;
    o.s("  #").dec(i - first).s(" ").hex(addr, 12);
    Dl_info info;
    void* symEntry = nullptr;
    void* mapEntry = nullptr;
    if (::dladdr1(reinterpret_cast<void*>(at), &info, &mapEntry, RTLD_DL_LINKMAP) && mapEntry &&
        ::dladdr1(reinterpret_cast<void*>(at), &info, &symEntry, RTLD_DL_SYMENT)) {
      // The offset addr2line takes is the address minus the module's load bias (0 for a non-PIE
      // executable, whose addresses are absolute).
      const auto* map = static_cast<const struct link_map*>(mapEntry);
      const auto* sym = static_cast<const ElfW(Sym)*>(symEntry);
      const char* module = map->l_name && map->l_name[0] ? map->l_name : exePath;
      o.s(" ").s(module).s(" +").hex(at - static_cast<uintptr_t>(map->l_addr));
      const uintptr_t symAt = reinterpret_cast<uintptr_t>(info.dli_saddr);
      if (info.dli_sname && sym && at >= symAt && at < symAt + sym->st_size)
        o.s(" ").s(info.dli_sname).s("+").hex(at - symAt);
    }
    o.c('\n');
  }
  if (n <= first + 1) o.s("  (no frames beyond the fault: the unwinder could not walk this stack)\n");
}

void chainToPrevious(int sig, siginfo_t* info, void* context) {
  const struct sigaction& p = previous[sig];
  if (p.sa_flags & SA_SIGINFO) {
    if (p.sa_sigaction) p.sa_sigaction(sig, info, context);
  } else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN && p.sa_handler != nullptr) {
    p.sa_handler(sig);
  }
}

void onFatalSignal(int sig, siginfo_t* info, void* context) {
  const int savedErrno = errno;
  // A WebAssembly out-of-bounds access is not a crash: V8 catches it with this same signal and
  // turns it into a JS exception. Let V8 look first.
  if ((sig == SIGSEGV || sig == SIGBUS) && wasmTrap && wasmTrap(sig, info, context)) {
    errno = savedErrno;
    return;
  }
  if (reporting.exchange(true)) {
    // Another thread is writing its report and will end the process.
    for (;;) ::pause();
  }
  const int64_t tid = static_cast<int64_t>(::syscall(SYS_gettid));
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  PathBuf fileName;
  const int fd = openCrashFile(ts.tv_sec, &fileName);
  uintptr_t pc = 0, sp = 0;
#if defined(__x86_64__)
  if (context) {
    pc = static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
    sp = static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSP]);
  }
#elif defined(__aarch64__)
  if (context) {
    pc = static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.pc);
    sp = static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.sp);
  }
#endif

  Out o;
  o.addFd(STDERR_FILENO);
  o.c('\n').flush();  // off whatever line stderr was on; the file starts with the report
  o.addFd(fd);
  o.s("==== reconpatch crash report ====\n");
  o.s("signal: ").s(signalName(sig)).s(", signal ").dec(sig);
  const char* code = info ? codeName(sig, info->si_code) : "";
  if (code[0]) o.s(", ").s(code);
  if (info && info->si_code <= 0) o.s(" (pid ").dec(info->si_pid).s(")");
  o.c('\n');
  if (info && info->si_code > 0 && sig != SIGABRT) o.s("fault address: ").hex(reinterpret_cast<uintptr_t>(info->si_addr), 16).c('\n');
  if (pc) o.s("instruction: ").hex(pc, 12).s(", stack pointer ").hex(sp, 12).c('\n');
  o.s("process: pid ").dec(::getpid()).s(", thread ").dec(tid).s(" (faulting), at ");
  putTime(o, ts.tv_sec);
  o.c('\n');
  putCommandLine(o);
  o.s(addonLine).c('\n');
  putCalls(o, tid);
  o.flush();  // the essentials are out before the unwinder and the loader's tables are touched
  putBacktrace(o, pc);
  if (fd >= 0) o.s("crash file: ").s(fileName.p).c('\n');
  else if (crashDir[0]) o.s("crash file: could not create one in ").s(crashDir).c('\n');
  o.s("==== end of crash report ====\n");
  o.flush();
  if (fd >= 0) ::close(fd);

  // Whatever ran before us (Node's handler resets stdio), then the default action: the signal is
  // blocked while we run, so the re-raised one is delivered as soon as we return.
  chainToPrevious(sig, info, context);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
  errno = savedErrno;
}

// ---- install (normal context) ----

std::string resolveCrashDir() {
  // The same rule as lib/weights.ts defaultCacheDir().
  const char* cache = std::getenv("RECONPATCH_CACHE");
  if (cache && *cache) {
    if (cache[0] == '/') return cache;
    char cwd[PATH_MAX];
    return ::getcwd(cwd, sizeof(cwd)) ? std::string(cwd) + "/" + cache : "";
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0] == '/') return std::string(xdg) + "/reconpatch";
  std::string home;
  if (const char* h = std::getenv("HOME"); h && *h) {
    home = h;
  } else {
    struct passwd pw {};
    struct passwd* found = nullptr;
    char buf[4096];
    if (::getpwuid_r(::getuid(), &pw, buf, sizeof(buf), &found) == 0 && found) home = found->pw_dir;
  }
  return home.empty() ? "" : home + "/.cache/reconpatch";
}

CrashHandlerState install(const std::string& torchVersion) {
#if defined(__SANITIZE_ADDRESS__)
  return {};
#else
  const char* env = std::getenv("RECONPATCH_CRASH_HANDLER");
  if (env && std::strcmp(env, "0") == 0) return {};
  std::string dir = resolveCrashDir();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.size() >= sizeof(crashDir)) dir.clear();
  std::memcpy(crashDir, dir.c_str(), dir.size() + 1);
  Dl_info self;
  const char* addonPath = ::dladdr(reinterpret_cast<void*>(&install), &self) && self.dli_fname ? self.dli_fname : "?";
  std::string line = std::string("addon: ") + addonPath + " (built against libtorch " + torchVersion + ")";
  if (line.size() >= sizeof(addonLine)) line.resize(sizeof(addonLine) - 1);
  std::memcpy(addonLine, line.c_str(), line.size() + 1);
  const ssize_t exeLen = ::readlink("/proc/self/exe", exePath, sizeof(exePath) - 1);
  if (exeLen > 0) exePath[exeLen] = '\0';
  wasmTrap = reinterpret_cast<WasmTrapHandler>(::dlsym(RTLD_DEFAULT, "_ZN2v829TryHandleWebAssemblyTrapPosixEiP9siginfo_tPv"));
  // backtrace() loads libgcc_s on its first call (dlopen: not safe in a handler): do it now.
  void* warm[4];
  (void)::backtrace(warm, 4);

  struct sigaction sa {};
  sa.sa_sigaction = onFatalSignal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : kSignals) sigaddset(&sa.sa_mask, sig);  // one report at a time on this thread
  for (int sig : kSignals) ::sigaction(sig, &sa, &previous[sig]);
  installed = true;
  return {true, dir};
#endif
}

}  // namespace

const CrashHandlerState& installCrashHandler(const std::string& torchVersion) {
  static const CrashHandlerState state = install(torchVersion);  // once per process
  ensureAltSignalStack();
  return state;
}

void ensureAltSignalStack() {
  thread_local bool done = false;
  if (done || !installed.load(std::memory_order_relaxed)) return;
  done = true;
  stack_t current {};
  if (::sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;  // it has one
  const size_t size = 64 * 1024;
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  stack_t ss {};
  ss.ss_sp = mem;
  ss.ss_size = size;
  ::sigaltstack(&ss, nullptr);  // kept for the thread's life (the pool's threads live as long as the process)
}

}  // namespace rpn
