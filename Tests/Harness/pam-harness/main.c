/*
 * pam-harness: runs one PAM transaction from a private configuration directory with
 * pam_start_confdir() (Linux-PAM >= 1.4), answering prompts from the command line, and
 * prints every message and the exact return codes. The integration tests drive it.
 *
 *   pam-harness --confdir DIR --service NAME --user USER [options]
 *     --answer TEXT        answer the next prompt with TEXT (repeatable, used in order)
 *     --answer-hex HEX     answer with raw bytes (NUL, non-UTF-8); NUL ends the C string
 *     --answer-big N       answer with N bytes of 'A'
 *     --conv-fail          the conversation function returns PAM_CONV_ERR
 *     --conv-null          the conversation function returns success and a NULL response
 *     --no-conv            pam_start gets a conversation whose function is NULL
 *     --acct               also run pam_acct_mgmt after a successful authenticate
 *     --acct-only          run only pam_acct_mgmt
 *     --silent             pass PAM_SILENT to pam_authenticate / pam_acct_mgmt
 *     --rhost HOST         set PAM_RHOST (as sshd does)
 *     --tty TTY            set PAM_TTY (":0": an X display, as screen lockers do)
 *
 * Output: "info: …", "error: …", "prompt: …" per message, then "authenticate: N NAME"
 * (and "acct_mgmt: N NAME"). Exit status: the last PAM return code.
 */
#define _GNU_SOURCE
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWERS 64

struct answers {
    char *items[MAX_ANSWERS];
    size_t lengths[MAX_ANSWERS];
    int count;
    int next;
    int fail;
    int null_response;
};

static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
    struct answers *a = data;
    if (a->fail)
        return PAM_CONV_ERR;
    if (a->null_response) {
        *resp = NULL;
        return PAM_SUCCESS;
    }
    struct pam_response *out = calloc((size_t)n, sizeof *out);
    if (out == NULL)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        switch (msg[i]->msg_style) {
        case PAM_TEXT_INFO:
            printf("info: %s\n", msg[i]->msg);
            break;
        case PAM_ERROR_MSG:
            printf("error: %s\n", msg[i]->msg);
            break;
        case PAM_PROMPT_ECHO_OFF:
        case PAM_PROMPT_ECHO_ON:
            printf("prompt: %s\n", msg[i]->msg);
            if (a->next >= a->count) {
                printf("harness: no answer left\n");
                free(out);
                return PAM_CONV_ERR;
            }
            out[i].resp = malloc(a->lengths[a->next] + 1);
            if (out[i].resp == NULL) {
                free(out);
                return PAM_BUF_ERR;
            }
            memcpy(out[i].resp, a->items[a->next], a->lengths[a->next]);
            out[i].resp[a->lengths[a->next]] = '\0';
            a->next++;
            break;
        default:
            break;
        }
    }
    fflush(stdout);
    *resp = out;
    return PAM_SUCCESS;
}

static int from_hex(const char *hex, char **out, size_t *length)
{
    size_t n = strlen(hex);
    if (n % 2)
        return -1;
    char *buf = malloc(n / 2 + 1);
    if (buf == NULL)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(buf);
            return -1;
        }
        buf[i] = (char)v;
    }
    *out = buf;
    *length = n / 2;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: pam-harness --confdir DIR --service NAME --user USER [--answer TEXT]... (see source)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *confdir = NULL, *service = NULL, *user = NULL, *rhost = NULL, *tty = NULL;
    int acct = 0, acct_only = 0, no_conv = 0, flags = 0;
    struct answers a = {0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--confdir") && val) { confdir = val; i++; }
        else if (!strcmp(arg, "--service") && val) { service = val; i++; }
        else if (!strcmp(arg, "--user") && val) { user = val; i++; }
        else if (!strcmp(arg, "--rhost") && val) { rhost = val; i++; }
        else if (!strcmp(arg, "--tty") && val) { tty = val; i++; }
        else if (!strcmp(arg, "--answer") && val && a.count < MAX_ANSWERS) {
            a.items[a.count] = strdup(val);
            a.lengths[a.count++] = strlen(val);
            i++;
        } else if (!strcmp(arg, "--answer-hex") && val && a.count < MAX_ANSWERS) {
            if (from_hex(val, &a.items[a.count], &a.lengths[a.count]) != 0)
                return usage();
            a.count++;
            i++;
        } else if (!strcmp(arg, "--answer-big") && val && a.count < MAX_ANSWERS) {
            size_t n = strtoul(val, NULL, 10);
            a.items[a.count] = malloc(n + 1);
            if (a.items[a.count] == NULL)
                return 3;
            memset(a.items[a.count], 'A', n);
            a.lengths[a.count++] = n;
            i++;
        } else if (!strcmp(arg, "--conv-fail")) a.fail = 1;
        else if (!strcmp(arg, "--conv-null")) a.null_response = 1;
        else if (!strcmp(arg, "--no-conv")) no_conv = 1;
        else if (!strcmp(arg, "--acct")) acct = 1;
        else if (!strcmp(arg, "--acct-only")) acct_only = 1;
        else if (!strcmp(arg, "--silent")) flags = PAM_SILENT;
        else return usage();
    }
    if (!confdir || !service || !user)
        return usage();

    struct pam_conv conv = { no_conv ? NULL : conversation, &a };
    pam_handle_t *pamh = NULL;
    int rc = pam_start_confdir(service, user, &conv, confdir, &pamh);
    if (rc != PAM_SUCCESS) {
        printf("pam_start_confdir: %d %s\n", rc, pam_strerror(pamh, rc));
        return rc;
    }
    if (rhost != NULL && (rc = pam_set_item(pamh, PAM_RHOST, rhost)) != PAM_SUCCESS) {
        printf("pam_set_item: %d %s\n", rc, pam_strerror(pamh, rc));
        pam_end(pamh, rc);
        return rc;
    }
    if (tty != NULL && (rc = pam_set_item(pamh, PAM_TTY, tty)) != PAM_SUCCESS) {
        printf("pam_set_item: %d %s\n", rc, pam_strerror(pamh, rc));
        pam_end(pamh, rc);
        return rc;
    }
    if (!acct_only) {
        rc = pam_authenticate(pamh, flags);
        printf("authenticate: %d %s\n", rc, pam_strerror(pamh, rc));
    }
    if (acct_only || (acct && rc == PAM_SUCCESS)) {
        rc = pam_acct_mgmt(pamh, flags);
        printf("acct_mgmt: %d %s\n", rc, pam_strerror(pamh, rc));
    }
    fflush(stdout);
    pam_end(pamh, rc);
    for (int i = 0; i < a.count; i++)
        free(a.items[i]);
    return rc;
}
