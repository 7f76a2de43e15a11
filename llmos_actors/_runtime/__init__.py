"""The actor side: process setup, class loading, the executor and the actor main loop."""
