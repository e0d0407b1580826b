from jitrl_cli.cli import main

main()
