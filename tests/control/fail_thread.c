/* A fault-injection shim for tests (LD_PRELOAD): pthread_create fails with EAGAIN while the
 * file named by KVMKIT_TEST_FAIL_THREADS exists, so a test can make the next thread kvmkit
 * starts (live migration's) fail after the VM is up. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
		   void *arg)
{
	const char *flag = getenv("KVMKIT_TEST_FAIL_THREADS");
	if (flag && access(flag, F_OK) == 0)
		return EAGAIN;
	create_fn real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
	return real ? real(thread, attr, start, arg) : ENOSYS;
}
