"""minireason: from-scratch, educational LLM-based recommendation-reason generation.

Read the package top to bottom in the order data flows:

    attention  ->  (layers, model, optim, train)      the compact GPT in NumPy
    data, features, prompts, tokenizer                seed steps 1-3
    generate, reasons, recommend, metrics             seed step 4 and evaluation

``backend`` picks NumPy or CuPy; ``gradcheck`` checks every hand-written backward.
"""

__version__ = "0.1.0"
