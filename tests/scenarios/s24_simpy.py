"""A real simpy simulation moved mid-run, between two env.run(until=...)
calls: the Environment (which binds env.process, env.timeout... as instance
attributes), its event queue, a shared Resource and the suspended process
generators all carry over; the simulation goes on to the same end."""
import simpy

from _scenario import log, move


def car(env, name, station, charge, trips):
    while True:
        yield env.timeout(3 + len(name))
        trips[name] += 1
        with station.request() as slot:
            yield slot
            log(f"{env.now:5.1f} {name} charging (trip {trips[name]})")
            yield env.timeout(charge)
        log(f"{env.now:5.1f} {name} leaves")


def clock(env, every):
    while True:
        yield env.timeout(every)
        log(f"{env.now:5.1f} tick, queue {len(env._queue)}")


env = simpy.Environment()
station = simpy.Resource(env, capacity=1)
trips = {"a": 0, "bb": 0, "ccc": 0}
cars = [env.process(car(env, name, station, charge, trips))
        for name, charge in (("a", 2), ("bb", 3), ("ccc", 1))]
env.process(clock(env, 5))
env.run(until=9.5)
log("paused at", env.now, trips, station.count, len(station.queue))
move()
env.run(until=30)
log("end at", env.now, trips, cars[0].is_alive, env.active_process)
