print("smartotp")
