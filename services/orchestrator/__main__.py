from services.orchestrator.worker import main

main()
