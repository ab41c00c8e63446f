/* Off-CPU test program for gala-collect's offcpu probe: waits for a line on standard
 * input, then sleeps COUNT times MS milliseconds in nap() (main -> wait_loop -> nap),
 * prints the microseconds it spent in nap() by its own clock (sleep plus the wait for a
 * CPU after each wake-up, which a loaded machine adds), and exits after one more line
 * (so that the collector can name its stacks while it lives). Built with frame pointers.
 * Usage: gala_sleeper COUNT MS */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* nap() makes the system call itself: glibc's nanosleep sets up no frame, so a
 * frame-pointer walk from inside it skips its caller, and nap would not be seen. */
__attribute__((noinline)) void nap(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	long ret;

	do {
#ifdef __x86_64__
		asm volatile("syscall"
			     : "=a"(ret)
			     : "a"(SYS_nanosleep), "D"(&ts), "S"(&ts)
			     : "rcx", "r11", "memory");
#else
		ret = nanosleep(&ts, &ts) ? -errno : 0;
#endif
	} while (ret == -EINTR);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) double wait_loop(int count, long ms)
{
	double in_nap = 0;

	for (int i = 0; i < count; i++) {
		double t = now();

		nap(ms);
		in_nap += now() - t;
	}
	return in_nap;
}

/* Blocks until a whole line arrives on standard input. */
__attribute__((noinline)) void wait_for_go(void)
{
	char c;

	do {
		if (read(0, &c, 1) != 1)
			exit(2);
	} while (c != '\n');
}

int main(int argc, char **argv)
{
	double in_nap;

	wait_for_go();
	in_nap = wait_loop(argc > 1 ? atoi(argv[1]) : 20, argc > 2 ? atol(argv[2]) : 100);
	printf("%.0f\n", in_nap * 1e6);
	fflush(stdout);
	wait_for_go();
	return 0;
}
