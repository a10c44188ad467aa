// smartotp-card: the virtual smart OTP card (CardEmulator), as its own program.
import CardEmulator

SmartOTPCard.main()
