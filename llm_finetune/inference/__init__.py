"""Loading a trained model of each kind and answering with it: generation, summaries, labels, extracted answers,
images; what evaluation, the registry's pyfunc and the endpoint all call."""
