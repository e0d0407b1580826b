from jitrl_cli.commands.app import main

main()
