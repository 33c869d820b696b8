/* Test-only stand-in for powershell.exe, the program tapcred starts to reach a person who
 * has no console (src/platform/desktop.rs). Each start appends its command line and its
 * whole environment to helper-calls.txt beside it, then prints helper-answer.txt (when it
 * exists) on stdout and exits, or else waits 10 minutes, as a dialog nobody answers or a
 * balloon. It appends "EXITED" when it ends by itself, so a program killed (by tapcred on
 * a touch or a timeout) leaves no such line. */
#include <stdio.h>
#include <string.h>
#include <windows.h>

static void beside(char *out, const char *dir, const char *name) {
  snprintf(out, MAX_PATH, "%s\\%s", dir, name);
}

int main(void) {
  char dir[MAX_PATH], path[MAX_PATH];
  DWORD n = GetModuleFileNameA(NULL, dir, MAX_PATH);
  if (n == 0 || n >= MAX_PATH) return 90;
  char *slash = strrchr(dir, '\\');
  if (slash) *slash = 0;

  beside(path, dir, "helper-calls.txt");
  FILE *log = fopen(path, "ab");
  if (!log) return 91;
  fprintf(log, "CMDLINE %s\n", GetCommandLineA());
  char *env = GetEnvironmentStringsA();
  for (char *v = env; v && *v; v += strlen(v) + 1) fprintf(log, "ENV %s\n", v);
  if (env) FreeEnvironmentStringsA(env);
  fprintf(log, "END\n");
  fclose(log);

  char calls[MAX_PATH];
  beside(calls, dir, "helper-calls.txt");
  beside(path, dir, "helper-answer.txt");
  FILE *answer = fopen(path, "rb");
  if (!answer) {
    Sleep(600000);
  } else {
    char buf[256];
    size_t got = fread(buf, 1, sizeof buf, answer);
    fclose(answer);
    fwrite(buf, 1, got, stdout);
  }
  log = fopen(calls, "ab");
  if (log) {
    fprintf(log, "EXITED\n");
    fclose(log);
  }
  return 0;
}
