/*
 * A test-only native winscard.dll for running Windows programs' PC/SC path under Wine,
 * whose own winscard.dll is a stub. Each call goes over loopback TCP (127.0.0.1, port in
 * TAPCRED_WINSCARD_BRIDGE_PORT) to tapcred-winscard-bridge, which makes it on the real pcscd
 * (tests/testkit/src/winscard_bridge.rs describes the wire format).
 *
 * This side keeps Windows' calling conventions: a NULL buffer asks for the length,
 * SCARD_AUTOALLOCATE hands out memory for SCardFreeMemory, a short buffer is
 * SCARD_E_INSUFFICIENT_BUFFER with the needed length, A forms use the ANSI code page and
 * W forms UTF-16. Nothing listening on the port is SCARD_E_NO_SERVICE, which is what
 * Windows returns when the Smart Card service is stopped. Never shipped.
 */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef ULONG_PTR SCARDCONTEXT;
typedef ULONG_PTR SCARDHANDLE;

typedef struct {
    DWORD dwProtocol;
    DWORD cbPciLength;
} SCARD_IO_REQUEST;

typedef struct {
    LPCSTR szReader;
    LPVOID pvUserData;
    DWORD dwCurrentState;
    DWORD dwEventState;
    DWORD cbAtr;
    BYTE rgbAtr[36];
} SCARD_READERSTATEA;

typedef struct {
    LPCWSTR szReader;
    LPVOID pvUserData;
    DWORD dwCurrentState;
    DWORD dwEventState;
    DWORD cbAtr;
    BYTE rgbAtr[36];
} SCARD_READERSTATEW;

/* The SCARD_* return codes come from winerror.h. */
#define SCARD_AUTOALLOCATE ((DWORD)-1)

#define OP_ESTABLISH 1
#define OP_RELEASE 2
#define OP_LIST_READERS 3
#define OP_CONNECT 4
#define OP_DISCONNECT 5
#define OP_STATUS 6
#define OP_TRANSMIT 7
#define OP_GET_STATUS_CHANGE 8
#define OP_BEGIN_TRANSACTION 9
#define OP_END_TRANSACTION 10
#define OP_GET_ATTRIB 11
#define OP_CANCEL 12
#define OP_IS_VALID 13

__declspec(dllexport) const SCARD_IO_REQUEST g_rgSCardT0Pci = {1, sizeof(SCARD_IO_REQUEST)};
__declspec(dllexport) const SCARD_IO_REQUEST g_rgSCardT1Pci = {2, sizeof(SCARD_IO_REQUEST)};
__declspec(dllexport) const SCARD_IO_REQUEST g_rgSCardRawPci = {0x10000, sizeof(SCARD_IO_REQUEST)};

/* ---- contexts: one TCP connection each ---- */

#define MAX_CONTEXTS 64
#define CONTEXT_TAG ((ULONG_PTR)0x5C000000)

typedef struct {
    int used;
    SOCKET sock;
    uint32_t remote_id;
    CRITICAL_SECTION lock;
} context_t;

static context_t contexts[MAX_CONTEXTS];
static CRITICAL_SECTION table_lock;
static LONG wsa_started;

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        InitializeCriticalSection(&table_lock);
        for (int i = 0; i < MAX_CONTEXTS; i++)
            InitializeCriticalSection(&contexts[i].lock);
    }
    return TRUE;
}

static SOCKET bridge_connect(void)
{
    char port[16];
    DWORD n = GetEnvironmentVariableA("TAPCRED_WINSCARD_BRIDGE_PORT", port, sizeof port);
    if (n == 0 || n >= sizeof port)
        return INVALID_SOCKET;
    if (InterlockedCompareExchange(&wsa_started, 1, 0) == 0) {
        WSADATA wsa;
        if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
            wsa_started = 0;
            return INVALID_SOCKET;
        }
    }
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET)
        return s;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((u_short)atoi(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        closesocket(s);
        return INVALID_SOCKET;
    }
    BOOL one = TRUE;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    return s;
}

/* ---- frames ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u32(buf_t *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, le, 4);
}

static void put_bytes(buf_t *b, const void *p, uint32_t n)
{
    put_u32(b, n);
    put(b, p, n);
}

/* A request: starts with the length placeholder and the op. */
static void request(buf_t *b, uint8_t op)
{
    memset(b, 0, sizeof *b);
    put_u32(b, 0);
    put(b, &op, 1);
}

typedef struct {
    uint8_t *data;
    size_t len, pos;
    int bad;
} reply_t;

static uint32_t get_u32(reply_t *r)
{
    if (r->pos + 4 > r->len) {
        r->bad = 1;
        return 0;
    }
    const uint8_t *p = r->data + r->pos;
    r->pos += 4;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* A byte string of the reply (not copied; valid until the reply is freed). */
static const uint8_t *get_bytes(reply_t *r, uint32_t *n)
{
    *n = get_u32(r);
    if (r->bad || r->pos + *n > r->len) {
        r->bad = 1;
        *n = 0;
        return NULL;
    }
    const uint8_t *p = r->data + r->pos;
    r->pos += *n;
    return p;
}

static int send_all(SOCKET s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int k = send(s, (const char *)p, (int)n, 0);
        if (k <= 0)
            return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

static int recv_all(SOCKET s, uint8_t *p, size_t n)
{
    while (n > 0) {
        int k = recv(s, (char *)p, (int)n, 0);
        if (k <= 0)
            return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

/* Send the request, read the reply; returns the call's return code (the bridge's, or ours
 * when the connection failed). The reply's body is in *r (free r->data). */
static LONG exchange(SOCKET s, buf_t *b, reply_t *r)
{
    memset(r, 0, sizeof *r);
    if (b->failed) {
        free(b->data);
        return SCARD_E_NO_MEMORY;
    }
    uint32_t len = (uint32_t)(b->len - 4);
    b->data[0] = (uint8_t)len;
    b->data[1] = (uint8_t)(len >> 8);
    b->data[2] = (uint8_t)(len >> 16);
    b->data[3] = (uint8_t)(len >> 24);
    int sent = send_all(s, b->data, b->len);
    free(b->data);
    uint8_t hdr[4];
    if (!sent || !recv_all(s, hdr, 4))
        return SCARD_E_SERVICE_STOPPED;
    uint32_t n = (uint32_t)hdr[0] | ((uint32_t)hdr[1] << 8) | ((uint32_t)hdr[2] << 16) | ((uint32_t)hdr[3] << 24);
    if (n < 4 || n > (1u << 20))
        return SCARD_E_SERVICE_STOPPED;
    r->data = malloc(n);
    if (!r->data)
        return SCARD_E_NO_MEMORY;
    if (!recv_all(s, r->data, n)) {
        free(r->data);
        r->data = NULL;
        return SCARD_E_SERVICE_STOPPED;
    }
    r->len = n;
    return (LONG)get_u32(r);
}

static context_t *lookup(SCARDCONTEXT h)
{
    ULONG_PTR i = h - CONTEXT_TAG;
    if ((h & ~(ULONG_PTR)0xFF) != CONTEXT_TAG || i >= MAX_CONTEXTS)
        return NULL;
    context_t *c = &contexts[i];
    return c->used ? c : NULL;
}

/* Card handles: the context's index+1 in the high half, the bridge's card id below. */
static context_t *card_context(SCARDHANDLE h, uint32_t *card)
{
    ULONG_PTR i = (ULONG_PTR)((uint64_t)h >> 32);
    *card = (uint32_t)h;
    if (i == 0 || i > MAX_CONTEXTS)
        return NULL;
    return contexts[i - 1].used ? &contexts[i - 1] : NULL;
}

/* Run a request on a context; the reply's body in *r. */
static LONG call(context_t *c, buf_t *b, reply_t *r)
{
    EnterCriticalSection(&c->lock);
    LONG rv = exchange(c->sock, b, r);
    LeaveCriticalSection(&c->lock);
    return rv;
}

/* Hand `count` elements of `elem` bytes to the caller the Windows way. */
static LONG out_buffer(const void *data, DWORD count, DWORD elem, void *dest, DWORD *pcount)
{
    if (!pcount)
        return dest ? SCARD_E_INVALID_PARAMETER : SCARD_S_SUCCESS;
    if (!dest) {
        *pcount = count;
        return SCARD_S_SUCCESS;
    }
    if (*pcount == SCARD_AUTOALLOCATE) {
        void *p = HeapAlloc(GetProcessHeap(), 0, (SIZE_T)count * elem + 1);
        if (!p)
            return SCARD_E_NO_MEMORY;
        memcpy(p, data, (size_t)count * elem);
        *(void **)dest = p;
        *pcount = count;
        return SCARD_S_SUCCESS;
    }
    if (*pcount < count) {
        *pcount = count;
        return SCARD_E_INSUFFICIENT_BUFFER;
    }
    memcpy(dest, data, (size_t)count * elem);
    *pcount = count;
    return SCARD_S_SUCCESS;
}

/* ---- strings: UTF-8 on the wire ---- */

static WCHAR *utf8_to_wide(const uint8_t *s, int n, int *out_len)
{
    int w = MultiByteToWideChar(CP_UTF8, 0, (LPCCH)s, n, NULL, 0);
    WCHAR *out = malloc(((size_t)w + 1) * sizeof(WCHAR));
    if (!out)
        return NULL;
    MultiByteToWideChar(CP_UTF8, 0, (LPCCH)s, n, out, w);
    out[w] = 0;
    if (out_len)
        *out_len = w;
    return out;
}

static char *wide_to(UINT cp, const WCHAR *w, int n, int *out_len)
{
    int m = WideCharToMultiByte(cp, 0, w, n, NULL, 0, NULL, NULL);
    char *out = malloc((size_t)m + 1);
    if (!out)
        return NULL;
    WideCharToMultiByte(cp, 0, w, n, out, m, NULL, NULL);
    out[m] = 0;
    if (out_len)
        *out_len = m;
    return out;
}

static char *utf8_to_ansi(const uint8_t *s, int n, int *out_len)
{
    int w_len;
    WCHAR *w = utf8_to_wide(s, n, &w_len);
    if (!w)
        return NULL;
    char *a = wide_to(CP_ACP, w, w_len, out_len);
    free(w);
    return a;
}

static char *ansi_to_utf8(const char *s)
{
    int w = MultiByteToWideChar(CP_ACP, 0, s, -1, NULL, 0);
    WCHAR *tmp = malloc((size_t)w * sizeof(WCHAR) + sizeof(WCHAR));
    if (!tmp)
        return NULL;
    MultiByteToWideChar(CP_ACP, 0, s, -1, tmp, w);
    char *u = wide_to(CP_UTF8, tmp, -1, NULL);
    free(tmp);
    return u;
}

/* ---- the API ---- */

__declspec(dllexport) LONG WINAPI SCardEstablishContext(DWORD scope, LPCVOID r1, LPCVOID r2, SCARDCONTEXT *out)
{
    (void)r1;
    (void)r2;
    if (!out)
        return SCARD_E_INVALID_PARAMETER;
    SOCKET s = bridge_connect();
    if (s == INVALID_SOCKET)
        return SCARD_E_NO_SERVICE;
    buf_t b;
    reply_t r;
    request(&b, OP_ESTABLISH);
    put_u32(&b, scope);
    LONG rv = exchange(s, &b, &r);
    uint32_t id = get_u32(&r);
    free(r.data);
    if (rv == SCARD_E_SERVICE_STOPPED)
        rv = SCARD_E_NO_SERVICE;
    if (rv != SCARD_S_SUCCESS) {
        closesocket(s);
        return rv;
    }
    EnterCriticalSection(&table_lock);
    int i;
    for (i = 0; i < MAX_CONTEXTS && contexts[i].used; i++)
        ;
    if (i == MAX_CONTEXTS) {
        LeaveCriticalSection(&table_lock);
        closesocket(s);
        return SCARD_E_NO_MEMORY;
    }
    contexts[i].used = 1;
    contexts[i].sock = s;
    contexts[i].remote_id = id;
    LeaveCriticalSection(&table_lock);
    *out = CONTEXT_TAG + (ULONG_PTR)i;
    return SCARD_S_SUCCESS;
}

__declspec(dllexport) LONG WINAPI SCardReleaseContext(SCARDCONTEXT h)
{
    EnterCriticalSection(&table_lock);
    context_t *c = lookup(h);
    if (!c) {
        LeaveCriticalSection(&table_lock);
        return SCARD_E_INVALID_HANDLE;
    }
    c->used = 0;
    LeaveCriticalSection(&table_lock);
    buf_t b;
    reply_t r;
    request(&b, OP_RELEASE);
    EnterCriticalSection(&c->lock);
    LONG rv = exchange(c->sock, &b, &r);
    closesocket(c->sock);
    c->sock = INVALID_SOCKET;
    LeaveCriticalSection(&c->lock);
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardIsValidContext(SCARDCONTEXT h)
{
    context_t *c = lookup(h);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    buf_t b;
    reply_t r;
    request(&b, OP_IS_VALID);
    LONG rv = call(c, &b, &r);
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardCancel(SCARDCONTEXT h)
{
    context_t *c = lookup(h);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    /* On a connection of its own: the context's may be blocked in the call to cancel. */
    SOCKET s = bridge_connect();
    if (s == INVALID_SOCKET)
        return SCARD_E_NO_SERVICE;
    buf_t b;
    reply_t r;
    request(&b, OP_CANCEL);
    put_u32(&b, c->remote_id);
    LONG rv = exchange(s, &b, &r);
    free(r.data);
    closesocket(s);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardFreeMemory(SCARDCONTEXT h, LPCVOID mem)
{
    (void)h;
    if (mem)
        HeapFree(GetProcessHeap(), 0, (LPVOID)mem);
    return SCARD_S_SUCCESS;
}

/* The reader names as one UTF-8 multi-string (NUL after each, one more at the end). */
static LONG list_readers_utf8(SCARDCONTEXT h, buf_t *multi)
{
    context_t *c = lookup(h);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    buf_t b;
    reply_t r;
    request(&b, OP_LIST_READERS);
    LONG rv = call(c, &b, &r);
    memset(multi, 0, sizeof *multi);
    if (rv == SCARD_S_SUCCESS) {
        uint32_t n = get_u32(&r);
        for (uint32_t i = 0; i < n && !r.bad; i++) {
            uint32_t len;
            const uint8_t *name = get_bytes(&r, &len);
            put(multi, name, len);
            put(multi, "", 1);
        }
        put(multi, "", 1);
        if (r.bad)
            rv = SCARD_F_INTERNAL_ERROR;
        else if (multi->failed)
            rv = SCARD_E_NO_MEMORY;
    }
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardListReadersA(SCARDCONTEXT h, LPCSTR groups, LPSTR readers, LPDWORD pcch)
{
    (void)groups;
    buf_t multi;
    LONG rv = list_readers_utf8(h, &multi);
    if (rv == SCARD_S_SUCCESS) {
        int n;
        char *a = utf8_to_ansi(multi.data, (int)multi.len, &n);
        rv = a ? out_buffer(a, (DWORD)n, 1, readers, pcch) : SCARD_E_NO_MEMORY;
        free(a);
    }
    free(multi.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardListReadersW(SCARDCONTEXT h, LPCWSTR groups, LPWSTR readers, LPDWORD pcch)
{
    (void)groups;
    buf_t multi;
    LONG rv = list_readers_utf8(h, &multi);
    if (rv == SCARD_S_SUCCESS) {
        int n;
        WCHAR *w = utf8_to_wide(multi.data, (int)multi.len, &n);
        rv = w ? out_buffer(w, (DWORD)n, sizeof(WCHAR), readers, pcch) : SCARD_E_NO_MEMORY;
        free(w);
    }
    free(multi.data);
    return rv;
}

static LONG connect_utf8(SCARDCONTEXT h, const char *reader, DWORD share, DWORD protocols, SCARDHANDLE *card, LPDWORD active)
{
    context_t *c = lookup(h);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    if (!card || !active)
        return SCARD_E_INVALID_PARAMETER;
    buf_t b;
    reply_t r;
    request(&b, OP_CONNECT);
    put_bytes(&b, reader, (uint32_t)strlen(reader));
    put_u32(&b, share);
    put_u32(&b, protocols);
    LONG rv = call(c, &b, &r);
    if (rv == SCARD_S_SUCCESS) {
        uint32_t id = get_u32(&r);
        *active = get_u32(&r);
        *card = ((SCARDHANDLE)(c - contexts + 1) << 32) | id;
    }
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardConnectA(SCARDCONTEXT h, LPCSTR reader, DWORD share, DWORD protocols, SCARDHANDLE *card, LPDWORD active)
{
    if (!reader)
        return SCARD_E_INVALID_PARAMETER;
    char *u = ansi_to_utf8(reader);
    if (!u)
        return SCARD_E_NO_MEMORY;
    LONG rv = connect_utf8(h, u, share, protocols, card, active);
    free(u);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardConnectW(SCARDCONTEXT h, LPCWSTR reader, DWORD share, DWORD protocols, SCARDHANDLE *card, LPDWORD active)
{
    if (!reader)
        return SCARD_E_INVALID_PARAMETER;
    char *u = wide_to(CP_UTF8, reader, -1, NULL);
    if (!u)
        return SCARD_E_NO_MEMORY;
    LONG rv = connect_utf8(h, u, share, protocols, card, active);
    free(u);
    return rv;
}

/* Calls on a card whose request is the card id and maybe one more number. */
static LONG card_call(SCARDHANDLE h, uint8_t op, int with_arg, uint32_t arg, reply_t *r)
{
    uint32_t id;
    context_t *c = card_context(h, &id);
    memset(r, 0, sizeof *r);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    buf_t b;
    request(&b, op);
    put_u32(&b, id);
    if (with_arg)
        put_u32(&b, arg);
    return call(c, &b, r);
}

__declspec(dllexport) LONG WINAPI SCardDisconnect(SCARDHANDLE h, DWORD disposition)
{
    reply_t r;
    LONG rv = card_call(h, OP_DISCONNECT, 1, disposition, &r);
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardBeginTransaction(SCARDHANDLE h)
{
    reply_t r;
    LONG rv = card_call(h, OP_BEGIN_TRANSACTION, 0, 0, &r);
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardEndTransaction(SCARDHANDLE h, DWORD disposition)
{
    reply_t r;
    LONG rv = card_call(h, OP_END_TRANSACTION, 1, disposition, &r);
    free(r.data);
    return rv;
}

/* SCardStatus: the reader name (UTF-8, from the bridge) is turned into the caller's form by
 * `name_out`. */
static LONG status_common(SCARDHANDLE h, int wide, void *names, LPDWORD pcch, LPDWORD state, LPDWORD protocol, LPBYTE atr, LPDWORD atr_len)
{
    reply_t r;
    LONG rv = card_call(h, OP_STATUS, 0, 0, &r);
    if (rv == SCARD_S_SUCCESS) {
        uint32_t name_len, atr_n;
        const uint8_t *name = get_bytes(&r, &name_len);
        uint32_t st = get_u32(&r);
        uint32_t proto = get_u32(&r);
        const uint8_t *atr_bytes = get_bytes(&r, &atr_n);
        if (r.bad) {
            free(r.data);
            return SCARD_F_INTERNAL_ERROR;
        }
        /* The name as a multi-string: the name, NUL, NUL. */
        uint8_t *multi = malloc(name_len + 2);
        if (!multi) {
            free(r.data);
            return SCARD_E_NO_MEMORY;
        }
        memcpy(multi, name, name_len);
        multi[name_len] = 0;
        multi[name_len + 1] = 0;
        if (pcch) {
            int n;
            if (wide) {
                WCHAR *w = utf8_to_wide(multi, (int)name_len + 2, &n);
                rv = w ? out_buffer(w, (DWORD)n, sizeof(WCHAR), names, pcch) : SCARD_E_NO_MEMORY;
                free(w);
            } else {
                char *a = utf8_to_ansi(multi, (int)name_len + 2, &n);
                rv = a ? out_buffer(a, (DWORD)n, 1, names, pcch) : SCARD_E_NO_MEMORY;
                free(a);
            }
        }
        free(multi);
        if (rv == SCARD_S_SUCCESS && atr_len)
            rv = out_buffer(atr_bytes, atr_n, 1, atr, atr_len);
        if (state)
            *state = st;
        if (protocol)
            *protocol = proto;
    }
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardStatusA(SCARDHANDLE h, LPSTR names, LPDWORD pcch, LPDWORD state, LPDWORD protocol, LPBYTE atr, LPDWORD atr_len)
{
    return status_common(h, 0, names, pcch, state, protocol, atr, atr_len);
}

__declspec(dllexport) LONG WINAPI SCardStatusW(SCARDHANDLE h, LPWSTR names, LPDWORD pcch, LPDWORD state, LPDWORD protocol, LPBYTE atr, LPDWORD atr_len)
{
    return status_common(h, 1, names, pcch, state, protocol, atr, atr_len);
}

__declspec(dllexport) LONG WINAPI SCardTransmit(SCARDHANDLE h, const SCARD_IO_REQUEST *send_pci, const BYTE *send, DWORD send_len, SCARD_IO_REQUEST *recv_pci, LPBYTE recv_buf, LPDWORD recv_len)
{
    uint32_t id;
    context_t *c = card_context(h, &id);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    if (!send_pci || !send || !recv_len)
        return SCARD_E_INVALID_PARAMETER;
    buf_t b;
    reply_t r;
    request(&b, OP_TRANSMIT);
    put_u32(&b, id);
    put_bytes(&b, send, send_len);
    LONG rv = call(c, &b, &r);
    if (rv == SCARD_S_SUCCESS) {
        uint32_t n;
        const uint8_t *resp = get_bytes(&r, &n);
        if (r.bad)
            rv = SCARD_F_INTERNAL_ERROR;
        else if (!recv_buf) {
            *recv_len = n;
        } else if (*recv_len < n) {
            *recv_len = n;
            rv = SCARD_E_INSUFFICIENT_BUFFER;
        } else {
            memcpy(recv_buf, resp, n);
            *recv_len = n;
        }
        if (rv == SCARD_S_SUCCESS && recv_pci) {
            recv_pci->dwProtocol = send_pci->dwProtocol;
            recv_pci->cbPciLength = sizeof(SCARD_IO_REQUEST);
        }
    }
    free(r.data);
    return rv;
}

__declspec(dllexport) LONG WINAPI SCardGetAttrib(SCARDHANDLE h, DWORD attr, LPBYTE out, LPDWORD out_len)
{
    if (!out_len)
        return SCARD_E_INVALID_PARAMETER;
    reply_t r;
    LONG rv = card_call(h, OP_GET_ATTRIB, 1, attr, &r);
    if (rv == SCARD_S_SUCCESS) {
        uint32_t n;
        const uint8_t *v = get_bytes(&r, &n);
        rv = r.bad ? SCARD_F_INTERNAL_ERROR : out_buffer(v, n, 1, out, out_len);
    }
    free(r.data);
    return rv;
}

/* SCardGetStatusChange with the names already in UTF-8. */
static LONG get_status_change(SCARDCONTEXT h, DWORD timeout, char **names, DWORD *current, DWORD *event, DWORD *atr_len, BYTE (*atr)[36], DWORD n)
{
    context_t *c = lookup(h);
    if (!c)
        return SCARD_E_INVALID_HANDLE;
    buf_t b;
    reply_t r;
    request(&b, OP_GET_STATUS_CHANGE);
    put_u32(&b, timeout);
    put_u32(&b, n);
    for (DWORD i = 0; i < n; i++) {
        put_bytes(&b, names[i], (uint32_t)strlen(names[i]));
        put_u32(&b, current[i]);
    }
    LONG rv = call(c, &b, &r);
    if (rv == SCARD_S_SUCCESS) {
        for (DWORD i = 0; i < n && !r.bad; i++) {
            event[i] = get_u32(&r);
            uint32_t k;
            const uint8_t *a = get_bytes(&r, &k);
            if (k > 36)
                k = 36;
            memcpy(atr[i], a, k);
            atr_len[i] = k;
        }
        if (r.bad)
            rv = SCARD_F_INTERNAL_ERROR;
    }
    free(r.data);
    return rv;
}

/* The A and W forms share this: copy in, call, copy out. */
#define STATUS_CHANGE_BODY(STATES, N, TO_UTF8)                                           \
    do {                                                                                 \
        if (N > 0 && !STATES)                                                            \
            return SCARD_E_INVALID_PARAMETER;                                            \
        char **names = calloc(N + 1, sizeof *names);                                     \
        DWORD *cur = calloc(N + 1, sizeof *cur), *ev = calloc(N + 1, sizeof *ev);        \
        DWORD *alen = calloc(N + 1, sizeof *alen);                                       \
        BYTE(*atr)[36] = calloc(N + 1, sizeof *atr);                                     \
        LONG rv = SCARD_E_NO_MEMORY;                                                     \
        if (names && cur && ev && alen && atr) {                                         \
            DWORD i;                                                                     \
            for (i = 0; i < N; i++) {                                                    \
                if (!STATES[i].szReader || !(names[i] = TO_UTF8(STATES[i].szReader)))    \
                    break;                                                               \
                cur[i] = STATES[i].dwCurrentState;                                       \
            }                                                                            \
            rv = i < N ? SCARD_E_INVALID_PARAMETER                                       \
                       : get_status_change(h, timeout, names, cur, ev, alen, atr, N);    \
            if (rv == SCARD_S_SUCCESS)                                                   \
                for (i = 0; i < N; i++) {                                                \
                    STATES[i].dwEventState = ev[i];                                      \
                    STATES[i].cbAtr = alen[i];                                           \
                    memcpy(STATES[i].rgbAtr, atr[i], alen[i]);                           \
                }                                                                        \
        }                                                                                \
        for (DWORD i = 0; names && i < N; i++)                                           \
            free(names[i]);                                                              \
        free(names);                                                                     \
        free(cur);                                                                       \
        free(ev);                                                                        \
        free(alen);                                                                      \
        free(atr);                                                                       \
        return rv;                                                                       \
    } while (0)

static char *wide_to_utf8(const WCHAR *w)
{
    return wide_to(CP_UTF8, w, -1, NULL);
}

__declspec(dllexport) LONG WINAPI SCardGetStatusChangeA(SCARDCONTEXT h, DWORD timeout, SCARD_READERSTATEA *states, DWORD n)
{
    STATUS_CHANGE_BODY(states, n, ansi_to_utf8);
}

__declspec(dllexport) LONG WINAPI SCardGetStatusChangeW(SCARDCONTEXT h, DWORD timeout, SCARD_READERSTATEW *states, DWORD n)
{
    STATUS_CHANGE_BODY(states, n, wide_to_utf8);
}
