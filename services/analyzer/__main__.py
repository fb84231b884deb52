from services.analyzer.worker import main

main()
