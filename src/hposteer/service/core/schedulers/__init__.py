"""Multi-fidelity schedulers: when to stop, pause or promote a point from its intermediate reports.

Pure decision logic (no I/O, no clock): every decision is a function of the stored reports and
their arrival order (each report's ``seq``), so any replica reaches the same decision, before or
after a crash. The service feeds them from the database and applies what they decide through the
state-transition table.

* :mod:`.median`: the median stopping rule (Vizier);
* :mod:`.asha`: asynchronous successive halving (stops, never pauses);
* :mod:`.sha`: synchronous SuccessiveHalving (RapidFire's parameters): pause at a rung, promote
  the best ``1/eta``;
* :mod:`.hyperband`: brackets of SuccessiveHalving;
* :mod:`.desired_score`: Clara's stop of the whole task once a target is reached.
"""
