/* Test scaffolding for running tapcred.exe under Wine 8 in CI; never shipped.
 *
 * Rust's standard library for Windows takes its randomness from ProcessPrng in
 * bcryptprimitives.dll (Windows 10+). Wine 8 has no such DLL, so every Rust .exe stops at
 * start with STATUS_DLL_NOT_FOUND. Placed next to the .exe, this DLL provides the one
 * export, filled by RtlGenRandom (advapi32's SystemFunction036), which Wine implements. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
