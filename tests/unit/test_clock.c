/* clock_add: deadlines saturate instead of wrapping into the past. */
#include <stdint.h>

#include "check.h"
#include "clock.h"

int main(void)
{
	CHECK(clock_add(1, 2) == 3);
	CHECK(clock_add(0, UINT64_MAX) == UINT64_MAX);
	CHECK(clock_add(UINT64_MAX - 5, 5) == UINT64_MAX);
	/* One past the end: saturates, where plain addition gave 0. */
	CHECK(clock_add(UINT64_MAX - 5, 6) == UINT64_MAX);
	CHECK(clock_add(clock_usec(), UINT64_MAX) == UINT64_MAX);
	CHECK(clock_add(clock_usec(), 1) > clock_usec() - 1);
	return check_done();
}
