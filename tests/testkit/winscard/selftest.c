/*
 * The test-only winscard.dll's own check, as a Windows program using the real Windows
 * headers and import library (run under Wine with the DLL beside it): list readers the
 * three Windows ways, connect to the first one (W form), read its status and ATR attribute,
 * SELECT the OATH applet, a transaction, a reader-state query and a cancelled wait.
 * `selftest.exe noservice` only checks that SCardEstablishContext says SCARD_E_NO_SERVICE.
 * Prints `ok: …` lines; exit 0 when every check passed.
 */
#include <windows.h>
#include <winscard.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                 \
    do {                                 \
        if (cond) {                      \
            printf("ok: ");              \
        } else {                         \
            printf("FAIL: ");            \
            failures++;                  \
        }                                \
        printf(__VA_ARGS__);             \
        printf("\n");                    \
        fflush(stdout);                  \
    } while (0)

static SCARDCONTEXT ctx;

static DWORD WINAPI cancel_later(LPVOID arg)
{
    (void)arg;
    Sleep(300);
    LONG rv = SCardCancel(ctx);
    CHECK(rv == SCARD_S_SUCCESS, "SCardCancel -> 0x%08lx", (unsigned long)rv);
    return 0;
}

int main(int argc, char **argv)
{
    LONG rv;
    if (argc > 1 && strcmp(argv[1], "noservice") == 0) {
        rv = SCardEstablishContext(SCARD_SCOPE_USER, NULL, NULL, &ctx);
        CHECK(rv == (LONG)SCARD_E_NO_SERVICE, "no bridge: SCardEstablishContext -> 0x%08lx (SCARD_E_NO_SERVICE is 0x8010001d)", (unsigned long)rv);
        return failures ? 1 : 0;
    }

    rv = SCardEstablishContext(SCARD_SCOPE_USER, NULL, NULL, &ctx);
    CHECK(rv == SCARD_S_SUCCESS, "SCardEstablishContext -> 0x%08lx", (unsigned long)rv);
    if (rv != SCARD_S_SUCCESS)
        return 1;
    CHECK(SCardIsValidContext(ctx) == SCARD_S_SUCCESS, "SCardIsValidContext");

    /* 1. the length, then a buffer of that length */
    DWORD len = 0;
    rv = SCardListReadersA(ctx, NULL, NULL, &len);
    CHECK(rv == SCARD_S_SUCCESS && len > 2, "SCardListReadersA(NULL buffer) -> 0x%08lx, %lu chars", (unsigned long)rv, (unsigned long)len);
    char readers[1024] = {0};
    DWORD cap = sizeof readers;
    rv = SCardListReadersA(ctx, NULL, readers, &cap);
    CHECK(rv == SCARD_S_SUCCESS && cap == len, "SCardListReadersA(buffer) -> 0x%08lx, %lu chars", (unsigned long)rv, (unsigned long)cap);
    for (char *p = readers; *p; p += strlen(p) + 1)
        printf("reader: %s\n", p);
    /* 2. too short */
    DWORD small = 3;
    rv = SCardListReadersA(ctx, NULL, readers, &small);
    CHECK(rv == (LONG)SCARD_E_INSUFFICIENT_BUFFER && small == len, "SCardListReadersA(3-char buffer) -> 0x%08lx, needs %lu", (unsigned long)rv, (unsigned long)small);
    /* 3. allocated by the DLL (W form) */
    LPWSTR wreaders = NULL;
    DWORD wlen = SCARD_AUTOALLOCATE;
    rv = SCardListReadersW(ctx, NULL, (LPWSTR)&wreaders, &wlen);
    CHECK(rv == SCARD_S_SUCCESS && wreaders && wlen == len, "SCardListReadersW(SCARD_AUTOALLOCATE) -> 0x%08lx, %lu chars", (unsigned long)rv, (unsigned long)wlen);
    if (!wreaders)
        return 1;
    const char *first = readers;
    size_t flen = strlen(first);
    CHECK(flen > 2 && first[flen - 2] == ' ' && first[flen - 1] == '0', "first reader has a Windows name (NAME 0): %s", first);

    SCARDHANDLE card;
    DWORD proto = 0;
    rv = SCardConnectW(ctx, wreaders, SCARD_SHARE_EXCLUSIVE, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto);
    CHECK(rv == SCARD_S_SUCCESS && (proto == SCARD_PROTOCOL_T0 || proto == SCARD_PROTOCOL_T1), "SCardConnectW(exclusive) -> 0x%08lx, protocol %lu", (unsigned long)rv, (unsigned long)proto);
    SCardFreeMemory(ctx, wreaders);
    if (rv != SCARD_S_SUCCESS)
        return 1;

    LPSTR sname = NULL;
    DWORD sname_len = SCARD_AUTOALLOCATE, state = 99, sproto = 0;
    BYTE atr[64];
    DWORD atr_len = sizeof atr;
    rv = SCardStatusA(card, (LPSTR)&sname, &sname_len, &state, &sproto, atr, &atr_len);
    CHECK(rv == SCARD_S_SUCCESS && sname && strcmp(sname, first) == 0, "SCardStatusA -> 0x%08lx, reader %s", (unsigned long)rv, sname ? sname : "(none)");
    CHECK(state == SCARD_SPECIFIC, "SCardStatusA state %lu (SCARD_SPECIFIC is 6, a number, not pcsc-lite's bit mask)", (unsigned long)state);
    CHECK(sproto == proto && atr_len > 2 && atr[0] == 0x3B, "SCardStatusA protocol %lu, ATR of %lu bytes", (unsigned long)sproto, (unsigned long)atr_len);
    SCardFreeMemory(ctx, sname);

    BYTE attr[64];
    DWORD attr_len = 0;
    rv = SCardGetAttrib(card, SCARD_ATTR_ATR_STRING, NULL, &attr_len);
    CHECK(rv == SCARD_S_SUCCESS && attr_len == atr_len, "SCardGetAttrib(ATR, NULL buffer) -> 0x%08lx, %lu bytes", (unsigned long)rv, (unsigned long)attr_len);
    attr_len = sizeof attr;
    rv = SCardGetAttrib(card, SCARD_ATTR_ATR_STRING, attr, &attr_len);
    CHECK(rv == SCARD_S_SUCCESS && attr_len == atr_len && memcmp(attr, atr, atr_len) == 0, "SCardGetAttrib(ATR) equals SCardStatus's ATR");

    rv = SCardBeginTransaction(card);
    CHECK(rv == SCARD_S_SUCCESS, "SCardBeginTransaction -> 0x%08lx", (unsigned long)rv);
    static const BYTE select_oath[] = {0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01};
    BYTE resp[512];
    DWORD resp_len = 1;
    rv = SCardTransmit(card, SCARD_PCI_T1, select_oath, sizeof select_oath, NULL, resp, &resp_len);
    CHECK(rv == (LONG)SCARD_E_INSUFFICIENT_BUFFER && resp_len > 2, "SCardTransmit into 1 byte -> 0x%08lx, needs %lu", (unsigned long)rv, (unsigned long)resp_len);
    resp_len = sizeof resp;
    SCARD_IO_REQUEST recv_pci;
    rv = SCardTransmit(card, proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0, select_oath, sizeof select_oath, &recv_pci, resp, &resp_len);
    CHECK(rv == SCARD_S_SUCCESS && resp_len >= 2 && resp[resp_len - 2] == 0x90 && resp[resp_len - 1] == 0x00, "SELECT OATH -> 0x%08lx, %lu bytes, SW %02X%02X", (unsigned long)rv, (unsigned long)resp_len, resp_len >= 2 ? resp[resp_len - 2] : 0, resp_len >= 2 ? resp[resp_len - 1] : 0);
    CHECK(resp_len > 4 && resp[0] == 0x79, "the OATH applet answered with its version tag (0x79): first byte 0x%02X", resp[0]);
    rv = SCardEndTransaction(card, SCARD_LEAVE_CARD);
    CHECK(rv == SCARD_S_SUCCESS, "SCardEndTransaction -> 0x%08lx", (unsigned long)rv);
    rv = SCardEndTransaction(card, SCARD_LEAVE_CARD);
    CHECK(rv == (LONG)SCARD_E_NOT_TRANSACTED, "a second SCardEndTransaction -> 0x%08lx (SCARD_E_NOT_TRANSACTED)", (unsigned long)rv);

    rv = SCardDisconnect(card, SCARD_LEAVE_CARD);
    CHECK(rv == SCARD_S_SUCCESS, "SCardDisconnect -> 0x%08lx", (unsigned long)rv);
    rv = SCardTransmit(card, SCARD_PCI_T1, select_oath, sizeof select_oath, NULL, resp, &resp_len);
    CHECK(rv == (LONG)SCARD_E_INVALID_HANDLE, "SCardTransmit after disconnect -> 0x%08lx", (unsigned long)rv);

    SCARD_READERSTATEA rs;
    memset(&rs, 0, sizeof rs);
    rs.szReader = first;
    rs.dwCurrentState = SCARD_STATE_UNAWARE;
    rv = SCardGetStatusChangeA(ctx, 0, &rs, 1);
    CHECK(rv == SCARD_S_SUCCESS && (rs.dwEventState & SCARD_STATE_PRESENT) && rs.cbAtr == atr_len, "SCardGetStatusChangeA -> 0x%08lx, state 0x%lx, ATR %lu bytes", (unsigned long)rv, (unsigned long)rs.dwEventState, (unsigned long)rs.cbAtr);

    /* Nothing changes: the wait ends only by SCardCancel from another thread. */
    rs.dwCurrentState = rs.dwEventState & ~SCARD_STATE_CHANGED;
    HANDLE t = CreateThread(NULL, 0, cancel_later, NULL, 0, NULL);
    DWORD t0 = GetTickCount();
    rv = SCardGetStatusChangeA(ctx, INFINITE, &rs, 1);
    CHECK(rv == (LONG)SCARD_E_CANCELLED, "a waiting SCardGetStatusChangeA cancelled after %lu ms -> 0x%08lx", (unsigned long)(GetTickCount() - t0), (unsigned long)rv);
    WaitForSingleObject(t, 5000);

    rv = SCardReleaseContext(ctx);
    CHECK(rv == SCARD_S_SUCCESS, "SCardReleaseContext -> 0x%08lx", (unsigned long)rv);
    CHECK(SCardIsValidContext(ctx) == (LONG)SCARD_E_INVALID_HANDLE, "the released context is invalid");
    return failures ? 1 : 0;
}
