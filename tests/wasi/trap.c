/* Prints, then traps: the output so far is kept, the status is 134. */
#include <stdio.h>

int main(void) {
    printf("before the trap\n");
    fflush(stdout);
    __builtin_trap();
}
