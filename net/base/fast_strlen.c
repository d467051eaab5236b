/*
 * fast_strlen: see fast_strlen.h.
 *
 * The block holding s is read from its aligned start and the bits of the
 * bytes before s are shifted out of the mask.  Then single blocks until
 * the address is 64-byte aligned, then four blocks per step: their
 * compare results are or-ed, so a step costs one branch, and only the
 * step that found the NUL looks at the four masks apart.
 */
#include "fast_strlen.h"

#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>

/* Reads past the NUL are by design (fast_strlen.h). */
#define NO_ASAN __attribute__((no_sanitize_address))

/* Bit i set: byte i of the aligned block at p is NUL. */
NO_ASAN static inline unsigned zero_mask(const char *p)
{
	__m128i v = _mm_load_si128((const __m128i *)(const void *)p);

	return (unsigned)_mm_movemask_epi8(
	    _mm_cmpeq_epi8(v, _mm_setzero_si128()));
}

NO_ASAN size_t fast_strlen(const char *s)
{
	const char *p = (const char *)((uintptr_t)s & ~(uintptr_t)15);
	unsigned m = zero_mask(p) >> ((uintptr_t)s & 15);

	if (m)
		return (size_t)__builtin_ctz(m);
	for (p += 16; (uintptr_t)p & 63; p += 16) {
		m = zero_mask(p);
		if (m)
			return (size_t)(p - s) + (size_t)__builtin_ctz(m);
	}
	for (;; p += 64) {
		const __m128i z = _mm_setzero_si128();
		const __m128i *q = (const __m128i *)(const void *)p;
		__m128i a = _mm_cmpeq_epi8(_mm_load_si128(q), z);
		__m128i b = _mm_cmpeq_epi8(_mm_load_si128(q + 1), z);
		__m128i c = _mm_cmpeq_epi8(_mm_load_si128(q + 2), z);
		__m128i d = _mm_cmpeq_epi8(_mm_load_si128(q + 3), z);
		__m128i any =
		    _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));

		if (_mm_movemask_epi8(any))
			break;
	}
	/* The NUL is in one of these four blocks. */
	for (;; p += 16) {
		m = zero_mask(p);
		if (m)
			return (size_t)(p - s) + (size_t)__builtin_ctz(m);
	}
}

#else

size_t fast_strlen(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return (size_t)(p - s);
}

#endif
