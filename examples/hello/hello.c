#include <stdio.h>

int main(void) {
    printf("Hello from ReproVM!\n");
    return 0;
}
