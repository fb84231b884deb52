from services.validator.worker import main

main()
