#include "textflag.h"

// func outw(port, val uint16)
TEXT ·outw(SB), NOSPLIT, $0-4
	MOVW port+0(FP), DX
	MOVW val+2(FP), AX
	OUTW
	RET

// func inb(port uint16) byte
TEXT ·inb(SB), NOSPLIT, $0-9
	MOVW port+0(FP), DX
	XORL AX, AX
	INB
	MOVB AX, ret+8(FP)
	RET
