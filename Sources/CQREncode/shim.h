/* libqrencode (Debian's libqrencode-dev): the otpauth URI as a QR code, for `smartotp enroll --qr`. */
#include <qrencode.h>
