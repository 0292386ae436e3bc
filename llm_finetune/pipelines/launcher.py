"""Container entry of every pipeline step, copied to the root of the code bundle next to the llm_finetune package:

    python launcher.py prepare|train|evaluate [--option value ...]
"""

import sys

from llm_finetune.pipelines.dialogsum_steps import main

if __name__ == "__main__":
    main(sys.argv[1:])
